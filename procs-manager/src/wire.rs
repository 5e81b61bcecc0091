//! The bytes of a call and of its answer, and their decoder: what a
//! manager's server reads from clients it does not trust.
//!
//! ```text
//! request   kind u8 | object u64 | method u16 | fields
//! response  status u8 | fields            (status 0: done; else an ErrorKind,
//!                                          and one field, the message)
//! field     length u32 | that many bytes
//! ```
//!
//! Integers are little-endian. The transport (a ring of shared memory, or
//! a framed socket) carries each message whole, so a message has no length
//! of its own. The decoder reads a `&[u8]`, checks every length against
//! what is there before it takes anything, and returns a typed error:
//! it never panics and never allocates what a length claims.

use std::fmt;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A method of an object: `object`, `method` and its arguments.
    Call = 1,
    /// A new object: `method` is its [`Type`]; the answer is its id.
    Create = 2,
    /// The server ends once it has answered.
    Shutdown = 3,
    /// One more reference to `object`, held by the caller's process.
    Incref = 4,
    /// One reference fewer; the object is freed with its last.
    Decref = 5,
    /// One of the caller's references moves to another process (a proxy
    /// handed to a child): fields pid, start time.
    Transfer = 6,
    /// How many objects the server holds (one field).
    Count = 7,
    /// The object's proxy was serialized (to travel inside a value): it is
    /// counted no more and lives as long as the server.
    Pin = 8,
}

/// The types of object a server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Type {
    /// A dictionary of encoded keys to encoded values.
    Dict = 1,
    /// A list of encoded values.
    List = 2,
    /// Named fields of encoded values (Python's `Namespace`).
    Namespace = 3,
    /// One encoded value (Python's `m.Value`).
    Value = 4,
    /// A FIFO queue of encoded values (Python's `m.Queue`).
    Queue = 5,
    /// A lock held by one connection at a time (Python's `m.Lock`).
    Lock = 6,
    /// A flag to wait for (Python's `m.Event`).
    Event = 7,
    /// A value of a type registered with the server
    /// (`ManagerBuilder::register`, Python's `BaseManager.register`).
    Custom = 8,
    /// A lock its holder may take again (Python's `m.RLock`).
    RLock = 9,
    /// A condition variable with its own RLock (Python's `m.Condition`).
    Condition = 10,
    /// A counter to take and give (Python's `m.Semaphore(value)`).
    Semaphore = 11,
    /// A semaphore that refuses a release past its start
    /// (`m.BoundedSemaphore`).
    BoundedSemaphore = 12,
    /// A meeting point of `parties` (Python's `m.Barrier`).
    Barrier = 13,
    /// A queue whose items are reported done (`m.JoinableQueue`).
    JoinableQueue = 14,
    /// A list of fixed length (Python's `m.Array`).
    Array = 15,
}

impl Type {
    pub(crate) fn from_code(code: u16) -> Option<Type> {
        match code {
            1 => Some(Type::Dict),
            2 => Some(Type::List),
            3 => Some(Type::Namespace),
            4 => Some(Type::Value),
            5 => Some(Type::Queue),
            6 => Some(Type::Lock),
            7 => Some(Type::Event),
            8 => Some(Type::Custom),
            9 => Some(Type::RLock),
            10 => Some(Type::Condition),
            11 => Some(Type::Semaphore),
            12 => Some(Type::BoundedSemaphore),
            13 => Some(Type::Barrier),
            14 => Some(Type::JoinableQueue),
            15 => Some(Type::Array),
            _ => None,
        }
    }
}

/// Why a call failed on the server: Python's exception, or the protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorKind {
    /// Python's `KeyError`: no such key.
    Key = 1,
    /// Python's `IndexError`: no such position.
    Index = 2,
    /// Python's `ValueError`: no such value (a list's `remove`).
    Value = 3,
    /// No object of that id (freed, or never made).
    NoObject = 4,
    /// The object has no method of that number, or not with those
    /// arguments.
    NoMethod = 5,
    /// The request does not parse.
    BadRequest = 6,
    /// A limit of the server (objects, connections, sizes).
    Limit = 7,
    /// Python's `AttributeError`: no such field of a namespace.
    Attribute = 8,
    /// Python's `queue.Empty`: nothing to get in time.
    Empty = 9,
    /// Python's `queue.Full`: no room to put in time.
    Full = 10,
    /// Python's `RuntimeError`: a lock released by a client that does not
    /// hold it, or taken twice.
    Runtime = 11,
    /// A registered type's method returned an error (its message).
    Method = 12,
    /// A registered type's method panicked (the panic's message); the
    /// server goes on, and the value may be half-changed.
    Panic = 13,
    /// Python's `BrokenBarrierError`: the barrier was aborted, reset, or a
    /// wait on it timed out or left.
    BrokenBarrier = 14,
}

impl ErrorKind {
    fn from_code(code: u8) -> Option<ErrorKind> {
        use ErrorKind::*;
        [
            Key,
            Index,
            Value,
            NoObject,
            NoMethod,
            BadRequest,
            Limit,
            Attribute,
            Empty,
            Full,
            Runtime,
            Method,
            Panic,
            BrokenBarrier,
        ]
        .into_iter()
        .find(|k| *k as u8 == code)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Key => "KeyError",
            ErrorKind::Index => "IndexError",
            ErrorKind::Value => "ValueError",
            ErrorKind::NoObject => "no such object",
            ErrorKind::NoMethod => "no such method",
            ErrorKind::BadRequest => "bad request",
            ErrorKind::Limit => "limit reached",
            ErrorKind::Attribute => "AttributeError",
            ErrorKind::Empty => "queue.Empty",
            ErrorKind::Full => "queue.Full",
            ErrorKind::Runtime => "RuntimeError",
            ErrorKind::Method => "the method failed",
            ErrorKind::Panic => "the method panicked",
            ErrorKind::BrokenBarrier => "BrokenBarrierError",
        })
    }
}

/// Bytes that are not a message of this protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct Malformed(pub &'static str);

/// A request, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// What it asks.
    pub kind: Kind,
    /// The object it is about (0 for none).
    pub object: u64,
    /// The method's number, or the type to create.
    pub method: u16,
    /// The arguments, still encoded as fields.
    pub args: Fields<'a>,
}

const REQUEST_HEAD: usize = 1 + 8 + 2;

/// Starts a request in `out` (cleared); push its arguments with [`field`].
pub fn request(out: &mut Vec<u8>, kind: Kind, object: u64, method: u16) {
    out.clear();
    out.push(kind as u8);
    out.extend_from_slice(&object.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
}

/// Appends one field.
pub fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // A field longer than u32::MAX cannot be sent: the transports refuse
    // messages far smaller.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends one field holding an integer.
pub fn field_u64(out: &mut Vec<u8>, n: u64) {
    field(out, &n.to_le_bytes());
}

/// Starts a successful response in `out` (cleared).
pub fn done(out: &mut Vec<u8>) {
    out.clear();
    out.push(0);
}

/// A failed response.
pub fn failed(out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
    out.clear();
    out.push(kind as u8);
    field(out, message.as_bytes());
}

/// Reads a request.
pub fn parse_request(bytes: &[u8]) -> Result<Request<'_>, Malformed> {
    let head = bytes
        .get(..REQUEST_HEAD)
        .ok_or(Malformed("a request shorter than its head"))?;
    let kind = match head[0] {
        1 => Kind::Call,
        2 => Kind::Create,
        3 => Kind::Shutdown,
        4 => Kind::Incref,
        5 => Kind::Decref,
        6 => Kind::Transfer,
        7 => Kind::Count,
        8 => Kind::Pin,
        _ => return Err(Malformed("an unknown kind of request")),
    };
    let object = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
    let method = u16::from_le_bytes(head[9..11].try_into().expect("2 bytes"));
    let args = Fields::new(&bytes[REQUEST_HEAD..])?;
    Ok(Request {
        kind,
        object,
        method,
        args,
    })
}

/// A response: its fields, or the server's error.
pub fn parse_response(bytes: &[u8]) -> Result<Result<Fields<'_>, (ErrorKind, String)>, Malformed> {
    let (&status, rest) = bytes.split_first().ok_or(Malformed("an empty response"))?;
    let fields = Fields::new(rest)?;
    if status == 0 {
        return Ok(Ok(fields));
    }
    let kind = ErrorKind::from_code(status).ok_or(Malformed("an unknown status"))?;
    let message = fields.clone().next_field()?.unwrap_or_default();
    Ok(Err((kind, String::from_utf8_lossy(message).into_owned())))
}

/// A run of fields, checked whole when made: each length fits what
/// follows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    rest: &'a [u8],
    count: usize,
}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Fields({} fields, {} bytes)",
            self.count,
            self.rest.len()
        )
    }
}

impl<'a> Fields<'a> {
    /// Checks that `bytes` is a whole number of fields.
    pub fn new(bytes: &'a [u8]) -> Result<Fields<'a>, Malformed> {
        let mut at = bytes;
        let mut count = 0;
        while !at.is_empty() {
            let (len, body) = split_len(at)?;
            at = &body[len..];
            count += 1;
        }
        Ok(Fields { rest: bytes, count })
    }

    /// How many fields are left.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no field is left.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next field, if any.
    pub fn next_field(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (len, body) = split_len(self.rest)?;
        self.rest = &body[len..];
        self.count -= 1;
        Ok(Some(&body[..len]))
    }

    /// The next field, which must be there.
    pub fn take(&mut self) -> Result<&'a [u8], Malformed> {
        self.next_field()?.ok_or(Malformed("a field is missing"))
    }

    /// The next field as an integer.
    pub fn take_u64(&mut self) -> Result<u64, Malformed> {
        let f = self.take()?;
        let b: [u8; 8] = f
            .try_into()
            .map_err(|_| Malformed("an integer field is not 8 bytes"))?;
        Ok(u64::from_le_bytes(b))
    }

    /// Checks that no field is left.
    pub fn end(&self) -> Result<(), Malformed> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed("more fields than the method takes"))
        }
    }
}

fn split_len(at: &[u8]) -> Result<(usize, &[u8]), Malformed> {
    let (len, body) = at
        .split_first_chunk::<4>()
        .ok_or(Malformed("a field's length is cut short"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > body.len() {
        return Err(Malformed("a field is longer than the message"));
    }
    Ok((len, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        let mut out = Vec::new();
        request(&mut out, Kind::Call, 7, 3);
        field(&mut out, b"key");
        field_u64(&mut out, 42);
        let r = parse_request(&out).unwrap();
        assert_eq!((r.kind, r.object, r.method), (Kind::Call, 7, 3));
        let mut args = r.args;
        assert_eq!(args.len(), 2);
        assert_eq!(args.take().unwrap(), b"key");
        assert_eq!(args.take_u64().unwrap(), 42);
        assert!(args.end().is_ok());
        assert!(args.take().is_err());
    }

    #[test]
    fn a_length_that_lies_is_malformed() {
        let mut out = Vec::new();
        request(&mut out, Kind::Call, 1, 1);
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        out.extend_from_slice(b"short");
        assert_eq!(
            parse_request(&out),
            Err(Malformed("a field is longer than the message"))
        );
        assert!(parse_request(&out[..5]).is_err());
        assert!(parse_request(&[9; 11]).is_err());
    }

    #[test]
    fn an_error_response_names_its_kind() {
        let mut out = Vec::new();
        failed(&mut out, ErrorKind::Key, "'x'");
        let (k, m) = parse_response(&out).unwrap().unwrap_err();
        assert_eq!((k, m.as_str()), (ErrorKind::Key, "'x'"));
        assert!(parse_response(&[]).is_err());
        assert!(parse_response(&[200]).is_err());
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking() {
        // Every prefix and every one-byte change of a valid request.
        let mut out = Vec::new();
        request(&mut out, Kind::Create, u64::MAX, 2);
        field(&mut out, &[1, 2, 3]);
        field(&mut out, &[]);
        for n in 0..=out.len() {
            let _ = parse_request(&out[..n]);
            let _ = parse_response(&out[..n]);
        }
        for i in 0..out.len() {
            for b in [0u8, 1, 3, 0x7f, 0xff] {
                let mut m = out.clone();
                m[i] = b;
                if let Ok(r) = parse_request(&m) {
                    let mut a = r.args;
                    while let Ok(Some(_)) = a.next_field() {}
                }
            }
        }
    }
}
