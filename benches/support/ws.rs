//! A minimal WebSocket client for live panels that only listen: the upgrade request, then
//! server frames parsed in place in one buffer (no copy per message, no UTF-8 check), so that
//! a hundred panels on one core cost little more than the kernel's copy of their bytes.
//! Pings are answered; fragmented messages are not reassembled (the server does not fragment).

use std::io;
use std::net::SocketAddr;

use memchr::memmem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub struct Panel {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One frame from the server; `payload` borrows the panel's buffer.
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

impl Panel {
    /// Connects and upgrades `GET path` with the given extra header lines.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Panel> {
        Panel::connect_with_buffer(addr, path, headers, 1 << 20).await
    }

    /// [`Panel::connect`] with a receive buffer of `buffer` bytes to start with (it grows for a
    /// larger frame): thousands of sockets that receive short messages need little each.
    pub async fn connect_with_buffer(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        buffer: usize,
    ) -> io::Result<Panel> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut panel = Panel {
            stream,
            buf: vec![0; buffer.max(1024)],
            start: 0,
            end: 0,
        };
        let head_end = loop {
            if let Some(at) = memmem::find(&panel.buf[..panel.end], b"\r\n\r\n") {
                break at + 4;
            }
            if panel.end == panel.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "huge upgrade response",
                ));
            }
            panel.fill().await?;
        };
        if !panel.buf.starts_with(b"HTTP/1.1 101") {
            return Err(io::Error::other(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&panel.buf[..head_end])
            )));
        }
        panel.start = head_end;
        Ok(panel)
    }

    /// Reads more bytes into the free end of the buffer.
    async fn fill(&mut self) -> io::Result<()> {
        let read = self.stream.read(&mut self.buf[self.end..]).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the panel",
            ));
        }
        self.end += read;
        Ok(())
    }

    /// The next data or close frame (pings are answered on the way).
    pub async fn next(&mut self) -> io::Result<Frame<'_>> {
        loop {
            let (opcode, header, length) = loop {
                if let Some(parsed) = parse_header(&self.buf[self.start..self.end])? {
                    let (_, header, length) = parsed;
                    if self.end - self.start >= header + length {
                        break parsed;
                    }
                    self.make_room(header + length);
                } else {
                    self.make_room(14);
                }
                self.fill().await?;
            };
            let payload = self.start + header..self.start + header + length;
            self.start += header + length;
            if opcode == PING {
                // A pong from a client is masked; a zero mask leaves the payload as it is.
                let mut pong = vec![0x80 | PONG, 0x80 | length as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&self.buf[payload]);
                self.stream.write_all(&pong).await?;
                continue;
            }
            if opcode == PONG {
                continue;
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                // The frame stays readable: it was at `payload`, not yet overwritten.
            }
            return Ok(Frame {
                opcode,
                payload: &self.buf[payload],
            });
        }
    }

    /// Makes sure a frame of `total` bytes starting at `start` fits in the buffer.
    fn make_room(&mut self, total: usize) {
        if self.start + total <= self.buf.len() {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if total > self.buf.len() {
            self.buf.resize(total.next_power_of_two(), 0);
        }
    }

    /// Sends one text message as a single masked frame (a zero mask: the payload goes as it is).
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let length = text.len();
        let mut frame = Vec::with_capacity(length + 14);
        frame.push(0x80 | TEXT);
        if length < 126 {
            frame.push(0x80 | length as u8);
        } else if length <= u16::MAX as usize {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        self.stream.write_all(&frame).await
    }

    /// Sends a close frame (best effort).
    pub async fn close(mut self) {
        let _ = self
            .stream
            .write_all(&[0x80 | CLOSE, 0x80, 0, 0, 0, 0])
            .await;
    }
}

/// Opcode, header length and payload length of the frame at the start of `data`, if its header
/// is all there.
fn parse_header(data: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    if data.len() < 2 {
        return Ok(None);
    }
    if data[1] & 0x80 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "masked frame from the server",
        ));
    }
    let opcode = data[0] & 0x0F;
    let (header, length) = match data[1] & 0x7F {
        126 if data.len() >= 4 => (4, u16::from_be_bytes([data[2], data[3]]) as usize),
        127 if data.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&data[2..10]);
            (10, u64::from_be_bytes(bytes) as usize)
        }
        126 | 127 => return Ok(None),
        length => (2, length as usize),
    };
    Ok(Some((opcode, header, length)))
}
