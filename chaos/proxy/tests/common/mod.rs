//! Loopback servers for the proxy's tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo server: every byte read is written back; EOF is passed back.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// What a sink server saw on one connection.
#[derive(Debug)]
pub enum SinkEvent {
    Data(Vec<u8>),
    Eof,
    Error(std::io::ErrorKind),
}

/// A server that reports every read of every connection, and writes back
/// what it is told to.
pub async fn sink_server() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(TcpStreamWriter, SinkEvent)>,
) {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut r, w) = s.into_split();
                let w = TcpStreamWriter(std::sync::Arc::new(tokio::sync::Mutex::new(w)));
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) => {
                            let _ = tx.send((w.clone(), SinkEvent::Eof));
                            break;
                        }
                        Ok(n) => {
                            let _ = tx.send((w.clone(), SinkEvent::Data(buf[..n].to_vec())));
                        }
                        Err(e) => {
                            let _ = tx.send((w.clone(), SinkEvent::Error(e.kind())));
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[derive(Clone, Debug)]
pub struct TcpStreamWriter(pub std::sync::Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>);

impl TcpStreamWriter {
    pub async fn send(&self, data: &[u8]) {
        self.0.lock().await.write_all(data).await.unwrap();
    }
}

/// Sends `data` and reads back exactly as many bytes.
pub async fn exchange(s: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(data).await?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).await?;
    Ok(back)
}
