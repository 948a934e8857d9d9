//! The client side of HTTP/1.1 keep-alive, as little of it as the load generators need: read
//! one response at a time, framed by `Content-Length`.

use std::io;

use memchr::memmem;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads responses from one connection.
pub struct ResponseReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The head and body of the last response, as text (kept only for non-2xx answers).
    last_error: Option<String>,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader {
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            last_error: None,
        }
    }
}

impl ResponseReader {
    /// Reads the next complete response and returns its status code.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<u16> {
        loop {
            if let Some((status, length)) = parse(&self.buf[self.start..self.end])? {
                if !(200..300).contains(&status) {
                    let response = &self.buf[self.start..self.start + length];
                    self.last_error = Some(String::from_utf8_lossy(response).into_owned());
                }
                self.start += length;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                return Ok(status);
            }
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    let grown = self.buf.len() * 2;
                    self.buf.resize(grown, 0);
                }
            }
            let read = stream.read(&mut self.buf[self.end..]).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.end += read;
        }
    }
}

impl ResponseReader {
    /// The last response that was not a success, head and body.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

/// The status and total length of the complete response at the start of `data`, if it is all
/// there.
fn parse(data: &[u8]) -> io::Result<Option<(u16, usize)>> {
    let Some(head_end) = memmem::find(data, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &data[..head_end];
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what} in response head {:?}",
                String::from_utf8_lossy(head)
            ),
        )
    };
    if head.len() < 12 || !head.starts_with(b"HTTP/1.1 ") {
        return Err(bad("no HTTP/1.1 status line"));
    }
    let status: u16 = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let mut length = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|value| value.trim().parse::<usize>().ok());
            if length.is_none() {
                return Err(bad("bad Content-Length"));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(bad("unsupported Transfer-Encoding"));
        }
    }
    let body = match (status, length) {
        (_, Some(length)) => length,
        (100..=199 | 204 | 304, None) => 0,
        (_, None) => return Err(bad("no Content-Length")),
    };
    let total = head_end + 4 + body;
    Ok((data.len() >= total).then_some((status, total)))
}
