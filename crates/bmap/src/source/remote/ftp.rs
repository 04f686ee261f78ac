//! FTP (passive mode) with `suppaftp`: user and password from the URL (anonymous
//! otherwise), binary transfers, and `REST` to resume after a dropped connection.

use std::io::{self, Read};
use std::net::ToSocketAddrs;

use suppaftp::types::FileType;
use suppaftp::{FtpStream, TlsStream, TransferStream};
use url::Url;

use super::retry::Retry;
use super::{Error, Options, Remote, capped, redact};

/// Opens `url` as a stream.
pub(super) fn open(url: &Url, options: &Options) -> Result<Remote, Error> {
    let mut reader = Reader {
        url: url.clone(),
        options: options.clone(),
        path: percent_encoding::percent_decode_str(url.path())
            .decode_utf8_lossy()
            .into_owned(),
        control: None,
        data: None,
        pos: 0,
        size: None,
    };
    reader.connect(0)?;
    let size = reader.size;
    Ok(Remote::Stream {
        reader: Box::new(reader),
        size,
    })
}

/// A data transfer in progress (the stream type's TLS parameter is not nameable).
trait Transfer: Read + Send {
    /// Closes the data connection and checks the server's completion reply.
    fn finish(self: Box<Self>) -> suppaftp::FtpResult<()>;
}

impl<T: TlsStream + Send> Transfer for TransferStream<T>
where
    TransferStream<T>: Read,
{
    fn finish(self: Box<Self>) -> suppaftp::FtpResult<()> {
        TransferStream::finish(*self)
    }
}

struct Reader {
    url: Url,
    options: Options,
    path: String,
    control: Option<FtpStream>,
    data: Option<Box<dyn Transfer>>,
    pos: u64,
    size: Option<u64>,
}

impl Reader {
    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Transfer {
            url: redact(&self.url),
            message: message.to_string(),
        }
    }

    /// Logs in and starts a transfer from byte `from`.
    fn connect(&mut self, from: u64) -> Result<(), Error> {
        self.data = None;
        self.control = None;
        let host = self.url.host_str().unwrap_or("localhost").to_owned();
        let port = self.url.port().unwrap_or(21);
        let address = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| self.error(format!("cannot resolve '{host}': {e}")))?
            .next()
            .ok_or_else(|| self.error(format!("cannot resolve '{host}'")))?;
        let mut control = FtpStream::connect_timeout(address, capped(self.options.connect_timeout))
            .map_err(|e| self.error(e))?;
        let _ = control
            .get_ref()
            .set_read_timeout(Some(capped(self.options.read_timeout)));
        let user = match self.url.username() {
            "" => "anonymous".to_owned(),
            user => percent_encoding::percent_decode_str(user)
                .decode_utf8_lossy()
                .into_owned(),
        };
        let password = self
            .url
            .password()
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| "anonymous@".to_owned());
        control
            .login(user.as_str(), password.as_str())
            .map_err(|e| self.error(format!("login failed: {e}")))?;
        control
            .transfer_type(FileType::Binary)
            .map_err(|e| self.error(e))?;
        if self.size.is_none() {
            match control.size(&self.path) {
                Ok(size) => self.size = Some(size as u64),
                Err(suppaftp::FtpError::UnexpectedResponse(r)) if r.status.code() == 550 => {
                    return Err(Error::NotFound(redact(&self.url)));
                }
                Err(_) => {}
            }
        }
        if from > 0 {
            let offset = usize::try_from(from).map_err(|e| self.error(e))?;
            control.resume_transfer(offset).map_err(|e| self.error(e))?;
        }
        let data = control.retr_as_stream(&self.path).map_err(|e| match e {
            suppaftp::FtpError::UnexpectedResponse(ref r) if r.status.code() == 550 => {
                Error::NotFound(redact(&self.url))
            }
            e => self.error(e),
        })?;
        let _ = data
            .get_ref()
            .get_ref()
            .set_read_timeout(Some(capped(self.options.read_timeout)));
        self.data = Some(Box::new(data));
        self.control = Some(control);
        self.pos = from;
        Ok(())
    }

    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_none() {
            self.connect(self.pos).map_err(io::Error::other)?;
        }
        let data = self.data.as_mut().expect("connected above");
        let n = data.read(buf)?;
        if n == 0 {
            if let Some(data) = self.data.take() {
                data.finish().map_err(|e| {
                    io::Error::other(self.error(format!("the transfer failed: {e}")))
                })?;
            }
            if self.size.is_some_and(|size| self.pos < size) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the transfer ended at byte {}", self.pos),
                ));
            }
            if let Some(mut control) = self.control.take() {
                let _ = control.quit();
            }
            // Stay at the end: later reads return 0 without reconnecting.
            self.size = Some(self.pos);
            self.data = None;
            return Ok(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty()
            || self
                .size
                .is_some_and(|s| self.pos >= s && self.data.is_none() && self.control.is_none())
        {
            return Ok(0);
        }
        let mut retry = Retry::new(self.options.retries, &self.options.interrupt);
        loop {
            match self.read_once(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.data = None;
                    self.control = None;
                    if let Err(stop) = retry.after_failure() {
                        let error = stop.error(&self.url, retry.attempts(), self.pos, Box::new(e));
                        return Err(io::Error::other(error));
                    }
                }
            }
        }
    }
}
