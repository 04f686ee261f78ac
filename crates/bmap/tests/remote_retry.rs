//! The waits between attempts to reach a server watch the interrupt flag: a stop
//! asked for while a remote source waits to try again ends the wait at once, with
//! [`remote::Error::Interrupted`], instead of after the wait and the attempts left.
//! The server is a real TCP listener on 127.0.0.1 that drops every connection; the
//! tests count the connections it saw (a state), never time.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bmap::Interrupt;
use bmap::source::remote::{self, Error};
use url::Url;

/// A listener that closes each connection as soon as it accepts it; `on_accept` runs
/// just before each close with the number of connections so far.
fn dropping_server(on_accept: impl Fn(usize) + Send + 'static) -> (Url, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            on_accept(n);
            drop(stream);
        }
    });
    let url = Url::parse(&format!("http://127.0.0.1:{port}/x.bmap")).expect("url");
    (url, seen)
}

fn options(interrupt: &Interrupt) -> remote::Options {
    remote::Options {
        retries: 100,
        interrupt: interrupt.clone(),
        ..remote::Options::default()
    }
}

#[test]
fn without_a_stop_an_unreachable_server_is_tried_three_times() {
    let (url, seen) = dropping_server(|_| {});
    let error = remote::fetch(&url, &options(&Interrupt::new()), 1 << 20).expect_err("dropped");
    assert!(matches!(error, Error::Transfer { .. }), "{error:?}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "a first attempt and two retries"
    );
}

#[test]
fn a_stop_asked_for_after_the_first_failure_ends_the_wait_for_the_second() {
    let interrupt = Interrupt::new();
    let raiser = interrupt.clone();
    // Raised before the first connection is dropped: the client's first attempt fails
    // with the flag up, and it must neither wait nor make a second attempt.
    let (url, seen) = dropping_server(move |n| {
        if n == 1 {
            raiser.raise();
        }
    });
    let error = remote::fetch(&url, &options(&interrupt), 1 << 20).expect_err("stopped");
    assert!(matches!(error, Error::Interrupted(_)), "{error:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "no attempt after the stop");
    assert!(error.to_string().contains("interrupted"), "{error}");
}
