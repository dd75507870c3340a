//! A raw HTTP/1.1 server, for what a well-behaved framework cannot send: a connection reset
//! mid-response, a body shorter than its `Content-Length`, a response that never ends, a slow
//! answer, any status and headers byte for byte.
//!
//! In: a closure from the request head to an [`Answer`]. Out: exactly those bytes on the wire,
//! one request per connection, and the log of every request head. Bounded: an endless answer
//! stops after [`ENDLESS_BOUND`] bytes even if the client keeps reading.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{listen, lock};

/// The most an endless answer writes before it stops by itself.
pub const ENDLESS_BOUND: u64 = 256 << 20;

/// What the server does with one request.
#[derive(Clone)]
pub enum Answer {
    /// A complete response with `Content-Length` and `Connection: close`.
    Full {
        /// Status code.
        status: u16,
        /// Header lines before the length.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// `Content-Length: claimed`, then only `body`, then the connection closes.
    Truncated {
        /// What is sent.
        body: Vec<u8>,
        /// What the head announces.
        claimed: usize,
    },
    /// `prefix` is written, then the connection is reset (RST).
    Reset {
        /// Bytes sent before the reset.
        prefix: Vec<u8>,
    },
    /// No answer for this long, then a 204.
    Slow(Duration),
    /// These bytes as they are, then close.
    Bytes(Vec<u8>),
    /// `head`, then `piece` over and over (chunk-framed when `chunked`) until the client stops
    /// reading or [`ENDLESS_BOUND`] bytes are out.
    Endless {
        /// The response head, blank line included.
        head: String,
        /// What is repeated.
        piece: Vec<u8>,
        /// Whether each piece is a chunk of `Transfer-Encoding: chunked`.
        chunked: bool,
    },
}

impl Answer {
    /// A complete JSON response.
    pub fn json(status: u16, body: &str) -> Answer {
        Answer::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

type Respond = dyn Fn(&str) -> Answer + Send + Sync;

/// The request target (`/orders?page=2`) of a request head.
pub fn target(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or_default()
}

/// A loopback HTTP/1.1 server that answers each request as `respond(head)` says and logs the
/// heads. Clones share the server.
#[derive(Clone)]
pub struct RawServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    heads: Arc<Mutex<Vec<String>>>,
    /// Body bytes written by endless answers.
    sent: Arc<AtomicU64>,
    /// Set when an endless answer stopped writing.
    done: Arc<AtomicBool>,
}

impl RawServer {
    /// Starts the server on a free loopback port.
    pub async fn start(respond: impl Fn(&str) -> Answer + Send + Sync + 'static) -> RawServer {
        let (listener, url) = listen().await;
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sent, done) = (Arc::<AtomicU64>::default(), Arc::<AtomicBool>::default());
        let respond: Arc<Respond> = Arc::new(respond);
        let (log, written, stopped) = (heads.clone(), sent.clone(), done.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (respond, heads) = (respond.clone(), log.clone());
                let (sent, done) = (written.clone(), stopped.clone());
                tokio::spawn(async move {
                    let Some(head) = read_request(&mut sock).await else {
                        return;
                    };
                    lock(&heads).push(head.clone());
                    let reply = respond(&head);
                    answer(sock, reply, &sent, &done).await;
                });
            }
        });
        RawServer {
            url,
            heads,
            sent,
            done,
        }
    }

    /// Every request head so far, in arrival order.
    pub fn heads(&self) -> Vec<String> {
        lock(&self.heads).clone()
    }

    /// Every request target so far, in arrival order.
    pub fn targets(&self) -> Vec<String> {
        self.heads().iter().map(|h| target(h).to_owned()).collect()
    }

    /// Waits (bounded) until an endless answer stopped writing, and says how much it wrote.
    pub async fn sent_when_done(&self) -> u64 {
        for _ in 0..600 {
            if self.done.load(Ordering::SeqCst) {
                return self.sent.load(Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the endless answer never stopped writing");
    }
}

/// Reads one request head (and its body, if it has a length) and returns the head.
async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 256 * 1024 {
            return None;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Some(head)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

async fn answer(mut sock: TcpStream, answer: Answer, sent: &AtomicU64, done: &AtomicBool) {
    let head = |status: u16, headers: &[(String, String)], length: usize| {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {length}\r\nConnection: close\r\n\r\n"
        ));
        head.into_bytes()
    };
    match answer {
        Answer::Full {
            status,
            headers,
            body,
        } => {
            let _ = sock.write_all(&head(status, &headers, body.len())).await;
            let _ = sock.write_all(&body).await;
        }
        Answer::Truncated { body, claimed } => {
            let json = [("Content-Type".to_owned(), "application/json".to_owned())];
            let _ = sock.write_all(&head(200, &json, claimed)).await;
            let _ = sock.write_all(&body).await;
        }
        Answer::Reset { prefix } => {
            let _ = sock.write_all(&prefix).await;
            let _ = sock.flush().await;
            // SO_LINGER 0: the close sends RST rather than FIN. Blocking on drop is not a concern
            // with a zero linger.
            #[allow(deprecated)]
            let _ = sock.set_linger(Some(Duration::ZERO));
            drop(sock);
            return;
        }
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            let _ = sock.write_all(&head(204, &[], 0)).await;
        }
        Answer::Bytes(bytes) => {
            let _ = sock.write_all(&bytes).await;
        }
        Answer::Endless {
            head,
            piece,
            chunked,
        } => {
            let mut frame = piece.clone();
            if chunked {
                frame = format!("{:x}\r\n", piece.len()).into_bytes();
                frame.extend_from_slice(&piece);
                frame.extend_from_slice(b"\r\n");
            }
            if sock.write_all(head.as_bytes()).await.is_ok() {
                while sent.load(Ordering::SeqCst) < ENDLESS_BOUND {
                    if sock.write_all(&frame).await.is_err() {
                        break;
                    }
                    sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
            }
            done.store(true, Ordering::SeqCst);
            // The client stopped reading: closing is all that is left.
            return;
        }
    }
    let _ = sock.shutdown().await;
}
