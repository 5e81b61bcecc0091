//! Text mode (Python's `text=True`, `encoding=`, `errors=`): the bytes a
//! child writes decoded into a `String`, and text input encoded into bytes.

use crate::error::{Error, Result};

/// How text is turned into bytes and back (Python's `encoding`).
///
/// UTF-8 is the default, as Python's on Linux with a UTF-8 locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// UTF-8 (Python's `"utf-8"`).
    #[default]
    Utf8,
    /// ISO-8859-1 (Python's `"latin-1"`): each byte is the character of that
    /// code point, so every byte sequence decodes.
    Latin1,
    /// ASCII (Python's `"ascii"`): bytes 0 to 127 only.
    Ascii,
}

impl Encoding {
    /// Python's name for the encoding: `"utf-8"`, `"latin-1"`, `"ascii"`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Latin1 => "latin-1",
            Encoding::Ascii => "ascii",
        }
    }

    /// `bytes` as text, or the offset of the first byte that does not
    /// decode (under [`ErrorHandler::Strict`]).
    pub(crate) fn decode(self, bytes: &[u8], errors: ErrorHandler) -> Result<String, usize> {
        match self {
            Encoding::Utf8 => match errors {
                ErrorHandler::Strict => std::str::from_utf8(bytes)
                    .map(str::to_owned)
                    .map_err(|e| e.valid_up_to()),
                ErrorHandler::Replace => Ok(String::from_utf8_lossy(bytes).into_owned()),
                ErrorHandler::Ignore => Ok(bytes.utf8_chunks().map(|c| c.valid()).collect()),
            },
            Encoding::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Encoding::Ascii => {
                let mut text = String::with_capacity(bytes.len());
                for (at, &b) in bytes.iter().enumerate() {
                    match (b.is_ascii(), errors) {
                        (true, _) => text.push(char::from(b)),
                        (false, ErrorHandler::Strict) => return Err(at),
                        (false, ErrorHandler::Replace) => text.push(char::REPLACEMENT_CHARACTER),
                        (false, ErrorHandler::Ignore) => {}
                    }
                }
                Ok(text)
            }
        }
    }

    /// `text` as bytes, or the byte offset in `text` of the first character
    /// the encoding has no byte for (under [`ErrorHandler::Strict`]).
    pub(crate) fn encode(self, text: &str, errors: ErrorHandler) -> Result<Vec<u8>, usize> {
        let top = match self {
            Encoding::Utf8 => return Ok(text.as_bytes().to_vec()),
            Encoding::Latin1 => 0xFF,
            Encoding::Ascii => 0x7F,
        };
        let mut bytes = Vec::with_capacity(text.len());
        for (at, c) in text.char_indices() {
            match (
                u8::try_from(u32::from(c))
                    .ok()
                    .filter(|&b| u32::from(b) <= top),
                errors,
            ) {
                (Some(b), _) => bytes.push(b),
                (None, ErrorHandler::Strict) => return Err(at),
                (None, ErrorHandler::Replace) => bytes.push(b'?'),
                (None, ErrorHandler::Ignore) => {}
            }
        }
        Ok(bytes)
    }
}

/// What to do with bytes that do not decode, or characters that do not
/// encode (Python's `errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ErrorHandler {
    /// Fail with [`Error::UnicodeDecodeError`](crate::Error::UnicodeDecodeError)
    /// (or [`Error::UnicodeEncodeError`](crate::Error::UnicodeEncodeError)
    /// for input): Python's `"strict"`, the default.
    #[default]
    Strict,
    /// Put U+FFFD in place of what does not decode, `?` in place of what does
    /// not encode: Python's `"replace"`.
    Replace,
    /// Leave out what does not decode or encode: Python's `"ignore"`.
    Ignore,
}

/// The text settings of a run or a child: an encoding and an error handler.
///
/// `pub` only so that the sealed [`Output`] trait may name it; it is not
/// exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextMode {
    pub(crate) encoding: Encoding,
    pub(crate) errors: ErrorHandler,
}

mod sealed {
    pub trait Sealed: Sized {
        /// The output as this type: bytes as they are, or decoded text.
        /// The error is the offset of the first byte that does not decode,
        /// with the bytes given back.
        fn from_output(bytes: Vec<u8>, mode: super::TextMode) -> Result<Self, (Vec<u8>, usize)>;

        /// Back to bytes, for an error that carries the output.
        fn into_bytes(self) -> Vec<u8>;
    }
}

/// The type of what a [`Run`](super::Run) captures: `Vec<u8>` (the default)
/// or, after [`Run::text`](super::Run::text), `String`. Sealed: only these
/// two.
pub trait Output: sealed::Sealed {}

impl Output for Vec<u8> {}
impl Output for String {}

impl sealed::Sealed for Vec<u8> {
    fn from_output(bytes: Vec<u8>, _: TextMode) -> Result<Self, (Vec<u8>, usize)> {
        Ok(bytes)
    }
    fn into_bytes(self) -> Vec<u8> {
        self
    }
}

impl sealed::Sealed for String {
    fn from_output(bytes: Vec<u8>, mode: TextMode) -> Result<Self, (Vec<u8>, usize)> {
        match mode.encoding {
            // The common case without a copy.
            Encoding::Utf8 if mode.errors == ErrorHandler::Strict => String::from_utf8(bytes)
                .map_err(|e| {
                    let at = e.utf8_error().valid_up_to();
                    (e.into_bytes(), at)
                }),
            encoding => encoding
                .decode(&bytes, mode.errors)
                .map_err(|at| (bytes, at)),
        }
    }
    fn into_bytes(self) -> Vec<u8> {
        self.into_bytes()
    }
}

pub(crate) use sealed::Sealed;

impl TextMode {
    /// `text` encoded for the child's stdin.
    pub(crate) fn encode_input(self, cmd: &[String], text: &str) -> Result<Vec<u8>> {
        self.encoding
            .encode(text, self.errors)
            .map_err(|position| Error::UnicodeEncodeError {
                cmd: cmd.to_vec(),
                encoding: self.encoding.name(),
                position,
            })
    }

    /// Both outputs of a child that ended with `returncode`, as `O`.
    pub(crate) fn decode_outputs<O: Sealed>(
        self,
        cmd: &[String],
        returncode: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    ) -> Result<(O, O)> {
        let error = |stream, position, stdout, stderr| Error::UnicodeDecodeError {
            cmd: cmd.to_vec(),
            stream,
            encoding: self.encoding.name(),
            position,
            returncode,
            stdout,
            stderr,
        };
        let stdout = match O::from_output(stdout, self) {
            Ok(out) => out,
            Err((stdout, at)) => return Err(error("stdout", at, stdout, stderr)),
        };
        match O::from_output(stderr, self) {
            Ok(err) => Ok((stdout, err)),
            Err((stderr, at)) => Err(error("stderr", at, stdout.into_bytes(), stderr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decodes_strictly_or_replaces_or_ignores() {
        let bad = b"ok \xff\xfe end";
        assert_eq!(Encoding::Utf8.decode(bad, ErrorHandler::Strict), Err(3));
        assert_eq!(
            Encoding::Utf8.decode(bad, ErrorHandler::Replace).as_deref(),
            Ok("ok \u{fffd}\u{fffd} end")
        );
        assert_eq!(
            Encoding::Utf8.decode(bad, ErrorHandler::Ignore).as_deref(),
            Ok("ok  end")
        );
        assert_eq!(
            Encoding::Utf8
                .decode("é".as_bytes(), ErrorHandler::Strict)
                .as_deref(),
            Ok("é")
        );
    }

    #[test]
    fn latin1_decodes_every_byte_and_encodes_up_to_ff() {
        assert_eq!(
            Encoding::Latin1
                .decode(b"\xe9\xff", ErrorHandler::Strict)
                .as_deref(),
            Ok("éÿ")
        );
        assert_eq!(
            Encoding::Latin1.encode("é", ErrorHandler::Strict),
            Ok(vec![0xe9])
        );
        assert_eq!(Encoding::Latin1.encode("a€", ErrorHandler::Strict), Err(1));
        assert_eq!(
            Encoding::Latin1.encode("a€b", ErrorHandler::Replace),
            Ok(b"a?b".to_vec())
        );
    }

    #[test]
    fn ascii_stops_at_128() {
        assert_eq!(
            Encoding::Ascii.decode(b"a\x80", ErrorHandler::Strict),
            Err(1)
        );
        assert_eq!(
            Encoding::Ascii
                .decode(b"a\x80b", ErrorHandler::Ignore)
                .as_deref(),
            Ok("ab")
        );
        assert_eq!(
            Encoding::Ascii.encode("aé", ErrorHandler::Ignore),
            Ok(b"a".to_vec())
        );
    }
}
