//! The HTTP/1.1 wire format of the upstream hop (RFC 9112): request heads
//! out; response heads, their framing, and chunked bodies in. Pure functions
//! over buffers; the socket work is in `conn`.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use std::mem::MaybeUninit;

/// Most header lines accepted in a response head.
pub const MAX_HEADERS: usize = 128;
/// Largest response head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (size, extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Why an upstream's answer cannot be used. Never shown to clients (they
/// get a 502); logged at warn.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("the response head is malformed")]
    BadHead,
    #[error("the response head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("the response has an invalid or conflicting Content-Length")]
    BadLength,
    #[error("the chunked response body is malformed")]
    BadChunk,
    #[error("the upstream answered 101 Switching Protocols, which is not proxied")]
    Upgrade,
    #[error("an HTTP/1.0 response with Transfer-Encoding (RFC 9112 section 6.1)")]
    TransferEncodingInHttp10,
    #[error("more than {MAX_INTERIM} interim (1xx) responses before the final one")]
    TooManyInterim,
}

/// Most interim (1xx) responses accepted before the final one: an upstream
/// that sends them without end is refused rather than read until the
/// upstream timeout.
pub const MAX_INTERIM: u32 = 32;

/// How the request body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqFraming {
    /// No body and no framing header (GET, HEAD, ...).
    Empty,
    Length(u64),
    Chunked,
}

/// Methods whose requests normally carry a body: sent with
/// `content-length: 0` when they have none, as browsers and hyper do.
fn expects_body(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// The `Host` a request goes upstream with.
#[derive(Clone, Copy, Debug)]
pub enum HostLine<'a> {
    /// The upstream's authority; a `Host` among the headers is not sent
    /// (and need not be taken out of them first).
    Upstream(&'a str),
    /// The headers' own `Host`, or the upstream's authority when they have
    /// none.
    Preserve(&'a str),
}

/// Write `METHOD target HTTP/1.1`, the headers, the `Host` line `host`
/// calls for, the lines in `added` (already `name: value\r\n`), and the
/// framing header. Any `content-length` or `transfer-encoding` in `headers`
/// is left out: `framing` decides.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &[u8],
    host: HostLine<'_>,
    headers: &HeaderMap,
    added: &[u8],
    framing: ReqFraming,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (own_host, replace) = match host {
        HostLine::Upstream(h) => (Some(h), true),
        HostLine::Preserve(h) => (Some(h).filter(|_| !headers.contains_key(HOST)), false),
    };
    if let Some(h) = own_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || (replace && name == HOST) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(added);
    match framing {
        ReqFraming::Empty if expects_body(method) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        ReqFraming::Empty => {}
        ReqFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ReqFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespFraming {
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: RespFraming,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parse a response head at the start of `buf`. `Ok(None)`: more bytes are
/// needed. On success the head's bytes are taken off `buf`; header values
/// share them rather than being copied. Interim (1xx) responses are skipped.
/// `interim` counts the interim responses skipped so far in this exchange
/// (they may arrive over several calls).
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    interim: &mut u32,
) -> Result<Option<Head>, ProtoError> {
    loop {
        // Uninitialised slots: filling 128 empty headers cost more than
        // parsing a typical head.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(ProtoError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ProtoError::HeadTooLarge),
            Err(_) => return Err(ProtoError::BadHead),
        };
        if len > MAX_HEAD_BYTES {
            return Err(ProtoError::HeadTooLarge);
        }
        let code = res.code.ok_or(ProtoError::BadHead)?;
        let status = StatusCode::from_u16(code).map_err(|_| ProtoError::BadHead)?;
        let version = if res.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProtoError::Upgrade);
        }
        if status.is_informational() {
            // 100 Continue, 102, 103: the final answer follows.
            *interim += 1;
            if *interim > MAX_INTERIM {
                return Err(ProtoError::TooManyInterim);
            }
            buf.advance(len);
            continue;
        }
        // Offsets of names and values in `buf`, so the values can share the
        // frozen head instead of each being copied.
        let base = buf.as_ptr() as usize;
        let n = res.headers.len();
        let mut few = [(0usize, 0usize, 0usize, 0usize); 16];
        let mut many = Vec::new();
        let spans = if n <= few.len() {
            &mut few[..n]
        } else {
            many.resize(n, (0, 0, 0, 0));
            &mut many[..]
        };
        for (slot, h) in spans.iter_mut().zip(res.headers.iter()) {
            let name_at = h.name.as_ptr() as usize - base;
            let value_at = h.value.as_ptr() as usize - base;
            *slot = (name_at, h.name.len(), value_at, h.value.len());
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(n);
        let mut f = Framing::default();
        for &(na, nl, va, vl) in spans.iter() {
            let name =
                HeaderName::from_bytes(&head[na..na + nl]).map_err(|_| ProtoError::BadHead)?;
            let value = HeaderValue::from_maybe_shared(head.slice(va..va + vl))
                .map_err(|_| ProtoError::BadHead)?;
            // Hop-by-hop headers are read for the framing and go no further:
            // not into the map, only to be taken out again before the
            // response is sent on.
            if f.note(&name, value.as_bytes()) {
                headers.append(name, value);
            }
        }
        return framing(status, version, method, headers, f).map(Some);
    }
}

fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    mut headers: HeaderMap,
    f: Framing,
) -> Result<Head, ProtoError> {
    let mut keep_alive = version == Version::HTTP_11 && !f.close;
    let no_body = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        RespFraming::Length(0)
    } else if let Some(chunked) = f.last_coding_is_chunked {
        if version == Version::HTTP_10 {
            return Err(ProtoError::TransferEncodingInHttp10);
        }
        if f.lengths > 0 {
            // Framed two ways: Transfer-Encoding wins, the length goes, and
            // the connection is not trusted with another request.
            headers.remove(CONTENT_LENGTH);
            keep_alive = false;
        }
        if chunked {
            RespFraming::Chunked
        } else {
            keep_alive = false;
            RespFraming::Close
        }
    } else if f.lengths > 0 {
        let n = f.length()?;
        // `5, 5` or the header twice: the client gets it once.
        if f.length_repeated {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        RespFraming::Length(n)
    } else {
        keep_alive = false;
        RespFraming::Close
    };
    Ok(Head {
        status,
        headers,
        framing,
        keep_alive,
    })
}

/// What a response's headers say about its framing, gathered header by
/// header as the head is parsed ([`Framing::note`]).
#[derive(Default)]
struct Framing {
    /// `Connection` lists `close`.
    close: bool,
    /// With `Transfer-Encoding`: whether its last coding is `chunked`.
    last_coding_is_chunked: Option<bool>,
    /// `Content-Length` headers.
    lengths: usize,
    /// More than one `Content-Length`, or a list in one (`5, 5`).
    length_repeated: bool,
    /// The length the `Content-Length` values agree on so far.
    found: Option<u64>,
    /// A `Content-Length` value that is not a number, or two that differ.
    bad_length: bool,
}

impl Framing {
    /// Takes note of one header, in order. Returns whether the header goes
    /// on to the client: not the hop-by-hop ones (RFC 9110 section 7.6.1),
    /// except a `Connection` that names other headers, which stays for
    /// [`crate::rewrite::strip_hop_by_hop`] to remove those.
    fn note(&mut self, name: &HeaderName, v: &[u8]) -> bool {
        if *name == CONTENT_LENGTH {
            self.lengths += 1;
            self.length_repeated |= self.lengths > 1 || v.contains(&b',');
            for item in v.split(|&b| b == b',') {
                match parse_length(item) {
                    Some(n) if self.found.is_none_or(|f| f == n) => self.found = Some(n),
                    _ => self.bad_length = true,
                }
            }
            return true;
        }
        if !crate::rewrite::is_hop_by_hop(name.as_str()) {
            return true;
        }
        if *name == TRANSFER_ENCODING {
            // Values come in order: the last one seen has the last coding.
            self.last_coding_is_chunked = Some(
                v.rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if *name == CONNECTION {
            let mut names_others = false;
            for token in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                names_others |= !token.is_empty() && !crate::rewrite::names_hop_by_hop(token);
            }
            return names_others;
        }
        false
    }

    /// The one length all `Content-Length` values (and list items) agree
    /// on; meaningful when `lengths > 0`.
    fn length(&self) -> Result<u64, ProtoError> {
        match (self.bad_length, self.found) {
            (false, Some(n)) => Ok(n),
            _ => Err(ProtoError::BadLength),
        }
    }
}

/// One `Content-Length` value or list item: decimal digits, at most 19.
pub(crate) fn parse_length(item: &[u8]) -> Option<u64> {
    let item = item.trim_ascii();
    if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        item.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

/// Where a chunked body's decoder stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one, with
    /// this many trailer bytes seen so far.
    Trailers(usize),
    Done,
}

/// One step of chunked decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// `buf` holds too little to go on.
    NeedMore,
    Done,
}

impl Chunked {
    /// Decode from `buf`: data comes out without copying; sizes, CRLFs and
    /// trailers are consumed. Call again after each `Data`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ProtoError> {
        loop {
            match *self {
                Chunked::Done => return Ok(Step::Done),
                Chunked::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 {
                        Chunked::Trailers(0)
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    *self = if left == n as u64 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n as u64)
                    };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtoError::BadChunk);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    // Trailer fields are dropped: most clients ignore them.
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILER_BYTES {
                        return Err(ProtoError::BadChunk);
                    }
                    *self = if line.is_empty() {
                        Chunked::Done
                    } else {
                        Chunked::Trailers(seen)
                    };
                }
            }
        }
    }
}

/// The next line (without its CRLF or bare LF), if a whole one is buffered.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ProtoError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i > max => Err(ProtoError::BadChunk),
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > max => Err(ProtoError::BadChunk),
        None => Ok(None),
    }
}

/// `1a;ext=v` -> 26. At most 16 hex digits; extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, ProtoError> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii_end();
    if digits.is_empty() || digits.len() > 16 {
        return Err(ProtoError::BadChunk);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = (d as char).to_digit(16).ok_or(ProtoError::BadChunk)?;
        Ok(acc << 4 | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<Head>, ProtoError> {
        let mut b = BytesMut::from(raw);
        parse_response(&mut b, &method, &mut 0)
    }

    #[test]
    fn request_heads() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &Method::GET,
            b"/p?q=1",
            HostLine::Preserve("up:80"),
            &h,
            b"",
            ReqFraming::Empty,
        );
        assert_eq!(out, b"GET /p?q=1 HTTP/1.1\r\nhost: up:80\r\nx-a: 1\r\n\r\n");
        encode_head(
            &mut out,
            &Method::POST,
            b"/",
            HostLine::Preserve("up"),
            &h,
            b"",
            ReqFraming::Empty,
        );
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nhost: up\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
        );
        encode_head(
            &mut out,
            &Method::PUT,
            b"/",
            HostLine::Preserve("up"),
            &h,
            b"x-b: 2\r\n",
            ReqFraming::Length(12),
        );
        assert!(out.ends_with(b"x-a: 1\r\nx-b: 2\r\ncontent-length: 12\r\n\r\n"));
        h.insert(
            http::header::HOST,
            HeaderValue::from_static("client.example"),
        );
        encode_head(
            &mut out,
            &Method::POST,
            b"/",
            HostLine::Preserve("up"),
            &h,
            b"",
            ReqFraming::Chunked,
        );
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nx-a: 1\r\nhost: client.example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_heads_and_framing() {
        let mut b =
            BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nok\nNEXT");
        let h = parse_response(&mut b, &Method::GET, &mut 0)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, RespFraming::Length(3));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-a"], "b");
        assert_eq!(&b[..], b"ok\nNEXT");

        let h = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.unwrap().unwrap().framing, RespFraming::Chunked);
        let h = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (RespFraming::Close, false));
        let h = parse("HTTP/1.1 200 OK\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (RespFraming::Close, false));
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (RespFraming::Chunked, false));
        assert!(!h.headers.contains_key(CONTENT_LENGTH));
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD);
        assert_eq!(h.unwrap().unwrap().framing, RespFraming::Length(0));
        let h = parse(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.unwrap().unwrap().framing, RespFraming::Length(0));
        let h = parse(
            "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.unwrap().unwrap().keep_alive);
        let h = parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.unwrap().unwrap().keep_alive);
        let h = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, RespFraming::Length(4));
        let lengths: Vec<_> = h.headers.get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(lengths, ["4"]);
        assert_eq!(
            parse(
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::GET
            )
            .unwrap_err(),
            ProtoError::TransferEncodingInHttp10
        );
    }

    #[test]
    fn hop_by_hop_response_headers_stay_behind() {
        // Read for the framing, not kept for the client.
        let h = parse(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Transfer-Encoding: chunked\r\nTrailer: x-t\r\nUpgrade: h2c\r\nX-A: b\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (RespFraming::Chunked, true));
        let names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a"]);
        // A `Connection` that names another header stays, for the strip
        // that removes the named header too; `close` still counts.
        let h = parse(
            "HTTP/1.1 200 OK\r\nConnection: close, X-Private\r\nX-Private: 1\r\n\
             Content-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        assert!(h.headers.contains_key(CONNECTION));
        let mut headers = h.headers;
        crate::rewrite::strip_hop_by_hop(&mut headers);
        let names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length"]);
        // A bad length is refused whatever order the headers come in.
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 4, \r\n\r\n",
        ] {
            assert_eq!(
                parse(head, Method::GET).unwrap_err(),
                ProtoError::BadLength,
                "{head}"
            );
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut b = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        );
        let h = parse_response(&mut b, &Method::POST, &mut 0)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 201);
        assert!(!h.headers.contains_key("link"));
        assert!(b.is_empty());
        let mut b = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2");
        assert!(parse_response(&mut b, &Method::POST, &mut 0)
            .unwrap()
            .is_none());
        // Counted across calls: the 33rd interim answer of an exchange is refused.
        let mut seen = 0;
        for _ in 0..MAX_INTERIM {
            let mut b = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\n");
            assert!(parse_response(&mut b, &Method::POST, &mut seen)
                .unwrap()
                .is_none());
        }
        let mut b = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(
            parse_response(&mut b, &Method::POST, &mut seen).unwrap_err(),
            ProtoError::TooManyInterim
        );
    }

    #[test]
    fn bad_heads() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        ] {
            assert_eq!(
                parse(raw, Method::GET).unwrap_err(),
                ProtoError::BadLength,
                "{raw}"
            );
        }
        assert_eq!(
            parse("SSH-2.0-OpenSSH\r\n\r\n", Method::GET).unwrap_err(),
            ProtoError::BadHead
        );
        assert_eq!(
            parse("HTTP/1.1 2000 OK\r\n\r\n", Method::GET).unwrap_err(),
            ProtoError::BadHead
        );
        assert_eq!(
            parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET).unwrap_err(),
            ProtoError::Upgrade
        );
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES + 1));
        assert_eq!(
            parse(&huge, Method::GET).unwrap_err(),
            ProtoError::HeadTooLarge
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse(&many, Method::GET).unwrap_err(),
            ProtoError::HeadTooLarge
        );
    }

    /// Decode `wire` fed in pieces of `step` bytes.
    fn dechunk(wire: &[u8], step: usize) -> Result<Vec<u8>, ProtoError> {
        let mut st = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pieces = wire.chunks(step.max(1));
        loop {
            match st.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::Done => return Ok(out),
                Step::NeedMore => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Err(ProtoError::BadChunk),
                },
            }
        }
    }

    #[test]
    fn chunked_bodies() {
        let wire =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                dechunk(wire, step).unwrap(),
                b"helloabcdefghijklmnopqrstuvwxyz",
                "step {step}"
            );
        }
        assert_eq!(dechunk(b"0\n\n", 1).unwrap(), b"");
        for bad in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"g\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
        ] {
            assert_eq!(
                dechunk(bad, 3).unwrap_err(),
                ProtoError::BadChunk,
                "{bad:?}"
            );
        }
        let long = format!("5;{}\r\n", "e".repeat(MAX_CHUNK_LINE + 1));
        assert_eq!(
            dechunk(long.as_bytes(), 64).unwrap_err(),
            ProtoError::BadChunk
        );
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(MAX_TRAILER_BYTES / 6 + 1));
        assert_eq!(
            dechunk(trailers.as_bytes(), 512).unwrap_err(),
            ProtoError::BadChunk
        );
    }
}
