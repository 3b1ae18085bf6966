//! The pure HTTP/1.x request parser of the status listener, and its
//! authorisation check.
//!
//! [`parse`] looks at the bytes received so far and says whether the head
//! (request line and headers, up to the blank line) is complete, still
//! incomplete, or refused with a status code. It keeps nothing but the
//! method, the path (query string dropped) and the `Authorization` header;
//! a body is never read (GET and HEAD have none, and the connection is
//! closed after the answer). Limits: [`MAX_HEAD`] bytes of head (431
//! beyond), [`MAX_HEADERS`] header lines (431), a declared body (413).
//! Bare LF line ends are taken; obsolete line folding is refused (400).
//!
//! [`authorized`] compares a token in constant time (for tokens of equal
//! length; the time depends on the longer length only).

/// The most bytes a request head may have.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most header lines a request may have.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Method {
    Get,
    Head,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    pub authorization: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The blank line that ends the head has not come yet.
    Incomplete,
    Complete(Request),
    /// Refused: answer with this status and close.
    Refused(u16),
}

/// Parses the request head in `buf` (everything received so far).
pub fn parse(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = head_end(window) else {
        return if buf.len() >= MAX_HEAD {
            Parse::Refused(431)
        } else {
            Parse::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&window[..end]) else {
        return Parse::Refused(400);
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(line) = lines.next() else {
        return Parse::Refused(400);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Refused(400);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Parse::Refused(if version.starts_with("HTTP/") {
            505
        } else {
            400
        });
    }
    if target.is_empty()
        || !target.starts_with('/')
        || target.bytes().any(|b| b <= b' ' || b == 0x7f)
    {
        return Parse::Refused(400);
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Parse::Refused(400);
    }
    let mut authorization = None;
    let mut count = 0;
    for l in lines {
        if l.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Parse::Refused(431);
        }
        if l.starts_with([' ', '\t']) {
            return Parse::Refused(400);
        }
        let Some((name, value)) = l.split_once(':') else {
            return Parse::Refused(400);
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Parse::Refused(400);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Parse::Refused(400);
            }
            authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") && value != "0"
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Parse::Refused(413);
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Parse::Refused(405),
    };
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    Parse::Complete(Request {
        method,
        path,
        authorization,
    })
}

/// Where the head ends (the index after its blank line's last byte, less
/// that line): the first `\n\n` or `\n\r\n`.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1..) {
                Some([b'\n', ..]) => return Some(i + 1),
                Some([b'\r', b'\n', ..]) => return Some(i + 1),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether an `Authorization` header value carries `token`: `Bearer TOKEN`,
/// or `Basic` with the token as the password (any user name).
pub fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return constant_time_eq(rest.as_bytes(), token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Some(decoded) = base64_decode(rest) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        return constant_time_eq(&decoded[colon + 1..], token.as_bytes());
    }
    false
}

/// Compares without an early exit: the time depends only on the longer
/// length, not on where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Standard base64 (padding optional); None for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &str) -> Request {
        match parse(raw.as_bytes()) {
            Parse::Complete(r) => r,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_get_and_head_with_the_query_dropped() {
        let r = complete("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((r.method, r.path.as_str()), (Method::Get, "/metrics"));
        let r = complete("HEAD / HTTP/1.0\n\n");
        assert_eq!((r.method, r.path.as_str()), (Method::Head, "/"));
    }

    #[test]
    fn waits_for_the_blank_line() {
        assert_eq!(parse(b""), Parse::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Parse::Incomplete);
    }

    #[test]
    fn refuses_by_rule() {
        let cases: &[(&str, u16)] = &[
            ("POST / HTTP/1.1\r\n\r\n", 405),
            ("DELETE /x HTTP/1.1\r\n\r\n", 405),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / FOO\r\n\r\n", 400),
            ("GET /\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\n\r\n", 400),
            ("GET x HTTP/1.1\r\n\r\n", 400),
            ("get / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nBad Name: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 413),
            ("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
            (
                "GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
                400,
            ),
        ];
        for (raw, status) in cases {
            assert_eq!(parse(raw.as_bytes()), Parse::Refused(*status), "{raw:?}");
        }
        assert_eq!(parse(b"GET /\xff HTTP/1.1\r\n\r\n"), Parse::Refused(400));
    }

    #[test]
    fn caps_the_head_at_8_kib_and_the_header_count() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Parse::Refused(431));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Parse::Refused(431));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse(many.as_bytes()), Parse::Refused(431));
        let ok = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS));
        assert!(matches!(parse(ok.as_bytes()), Parse::Complete(_)));
    }

    #[test]
    fn bearer_or_basic_password_with_any_user() {
        let t = "s3cret";
        assert!(authorized(Some("Bearer s3cret"), t));
        assert!(authorized(Some("bearer  s3cret"), t));
        // "anyone:s3cret" and ":s3cret"
        assert!(authorized(Some("Basic YW55b25lOnMzY3JldA=="), t));
        assert!(authorized(Some("Basic OnMzY3JldA"), t));
        assert!(!authorized(Some("Basic czNjcmV0"), t)); // no colon
        assert!(!authorized(Some("Bearer s3cre"), t));
        assert!(!authorized(Some("Bearer s3cret2"), t));
        assert!(!authorized(Some("Token s3cret"), t));
        assert!(!authorized(Some("Basic !!!"), t));
        assert!(!authorized(None, t));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
        assert!(!constant_time_eq(b"", b"\0"));
    }
}
