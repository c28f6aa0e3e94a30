//! A position-keeping reader over neopack bytes.
//!
//! neopack's `Decoder` reads every item kind but cannot hand back the raw bytes of a sub-item,
//! and its list iterator ends quietly on a malformed element. Frames need both (the argument
//! slab is returned as a borrowed slice; a bad list element must be an error), so this cursor
//! runs each read through a fresh `Decoder` over the unread tail and advances by what it
//! consumed. It knows neopack tags, never component value kinds. Its failures are `Error`s,
//! which `frame::Error` and `codec::Error` take over variant by variant (same names, same
//! facts), so each public error stays flat and exact.

use neopack::Decoder;
use neopack::Tag;

/// What reading or writing neopack items can fail with, before any layer gives it meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// The input ended in the middle of an item.
    Truncated,
    /// A byte where a neopack tag belongs is not a known tag.
    BadTag { byte: u8 },
    /// A string or char is not valid UTF-8 / not a Unicode scalar value.
    BadUtf8,
    /// The item found is not of the kind required.
    TypeMismatch {
        expected: &'static str,
        found: &'static str,
    },
    /// Bytes left over after a complete item.
    TrailingBytes { count: u64 },
    /// The neopack encoder refused a write (a structural bug or a blob over 4 GiB).
    Encode { reason: &'static str },
}

/// Implements `From<cursor::Error>` and `From<neopack::Error>` for a module's error enum
/// that has the cursor's variants under the same names (`frame::Error`, `codec::Error`).
macro_rules! take_over {
    ($error:ident) => {
        impl From<$crate::cursor::Error> for $error {
            fn from(error: $crate::cursor::Error) -> Self {
                match error {
                    $crate::cursor::Error::Truncated => $error::Truncated,
                    $crate::cursor::Error::BadTag { byte } => $error::BadTag { byte },
                    $crate::cursor::Error::BadUtf8 => $error::BadUtf8,
                    $crate::cursor::Error::TypeMismatch { expected, found } => {
                        $error::TypeMismatch { expected, found }
                    }
                    $crate::cursor::Error::TrailingBytes { count } => {
                        $error::TrailingBytes { count }
                    }
                    $crate::cursor::Error::Encode { reason } => $error::Encode { reason },
                }
            }
        }

        impl From<neopack::Error> for $error {
            fn from(error: neopack::Error) -> Self {
                $crate::cursor::Error::from(error).into()
            }
        }
    };
}
pub(crate) use take_over;

impl From<neopack::Error> for Error {
    fn from(error: neopack::Error) -> Self {
        match error {
            neopack::Error::UnexpectedEnd => Error::Truncated,
            neopack::Error::InvalidTag(byte) => Error::BadTag { byte },
            neopack::Error::InvalidUtf8 => Error::BadUtf8,
            neopack::Error::BlobTooLarge(_) => encode("blob over 4 GiB"),
            neopack::Error::BufferFull => encode("buffer full"),
            neopack::Error::ScopeMismatch { .. } => encode("scope mismatch"),
            neopack::Error::ScopeUnderflow => encode("scope underflow"),
            neopack::Error::ScopeStillOpen => encode("scope still open"),
            neopack::Error::TooManyItems(_) => encode("more than one item where one belongs"),
            neopack::Error::EmptyAdt(_) => encode("no item where one belongs"),
            neopack::Error::InvalidMapEntry => encode("map entry not a variant"),
            neopack::Error::Text(_) => encode("text format"),
        }
    }
}

fn encode(reason: &'static str) -> Error {
    Error::Encode { reason }
}

/// Bytes of a container header: one tag byte and a u32 little-endian body length.
const HEADER_BYTES: usize = 5;

/// Reads neopack items from a borrowed slice, keeping the position.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails with `TrailingBytes` unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        let count = self.remaining();
        if count == 0 {
            return Ok(());
        }
        Err(Error::TrailingBytes {
            count: u64::try_from(count).unwrap_or(u64::MAX),
        })
    }

    /// The tag of the next item, without reading it.
    pub(crate) fn peek(&self) -> Result<Tag, Error> {
        Ok(Decoder::new(self.tail()).peek_tag()?)
    }

    /// Runs one neopack read on the unread tail and advances past what it consumed.
    pub(crate) fn read<T>(
        &mut self,
        read: impl FnOnce(&mut Decoder<'a>) -> neopack::Result<T>,
    ) -> Result<T, Error> {
        let tail = self.tail();
        let mut decoder = Decoder::new(tail);
        let value = read(&mut decoder)?;
        self.pos += tail.len() - decoder.remaining();
        Ok(value)
    }

    /// The raw bytes of the next whole item (tag, length and body), unparsed.
    pub(crate) fn raw_item(&mut self) -> Result<&'a [u8], Error> {
        let tail = self.tail();
        let start = self.pos;
        self.read(|decoder| decoder.skip())?;
        Ok(&tail[..self.pos - start])
    }

    /// All unread bytes, unparsed; the cursor ends up empty.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        let rest = self.tail();
        self.pos = self.bytes.len();
        rest
    }

    /// Enters a container item with the given tag, returning a cursor over its body.
    ///
    /// `expected` names the kind the caller wanted, for the mismatch error.
    pub(crate) fn container(&mut self, tag: Tag, expected: &'static str) -> Result<Self, Error> {
        let found = self.peek()?;
        if found != tag {
            return Err(Error::TypeMismatch {
                expected,
                found: tag_name(found),
            });
        }
        let item = self.raw_item()?;
        Ok(Cursor::new(&item[HEADER_BYTES..]))
    }

    /// Fails with a type mismatch unless the next tag is `tag`.
    pub(crate) fn expect(&self, tag: Tag, expected: &'static str) -> Result<(), Error> {
        let found = self.peek()?;
        if found == tag {
            return Ok(());
        }
        Err(Error::TypeMismatch {
            expected,
            found: tag_name(found),
        })
    }

    /// Reads a string item.
    pub(crate) fn str(&mut self, expected: &'static str) -> Result<&'a str, Error> {
        self.expect(Tag::String, expected)?;
        self.read(|decoder| decoder.str())
    }

    /// Reads a u64 item.
    pub(crate) fn u64(&mut self, expected: &'static str) -> Result<u64, Error> {
        self.expect(Tag::U64, expected)?;
        self.read(|decoder| decoder.u64())
    }

    /// Reads a u32 item.
    pub(crate) fn u32(&mut self, expected: &'static str) -> Result<u32, Error> {
        self.expect(Tag::U32, expected)?;
        self.read(|decoder| decoder.u32())
    }

    /// Reads a variant item's name and returns a cursor over its single payload.
    pub(crate) fn variant(&mut self, expected: &'static str) -> Result<(&'a str, Self), Error> {
        let mut body = self.container(Tag::Variant, expected)?;
        let name = body.str("variant name")?;
        Ok((name, body))
    }

    fn tail(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }
}

/// The name of a neopack tag, as error messages show it.
pub(crate) fn tag_name(tag: Tag) -> &'static str {
    match tag {
        Tag::Pad => "pad",
        Tag::BoolTrue | Tag::BoolFalse => "bool",
        Tag::U8 => "u8",
        Tag::U16 => "u16",
        Tag::U32 => "u32",
        Tag::U64 => "u64",
        Tag::S8 => "s8",
        Tag::S16 => "s16",
        Tag::S32 => "s32",
        Tag::S64 => "s64",
        Tag::F32 => "f32",
        Tag::F64 => "f64",
        Tag::Char => "char",
        Tag::Unit => "unit",
        Tag::OptionNone => "none",
        Tag::String => "string",
        Tag::Bytes => "bytes",
        Tag::List => "list",
        Tag::Map => "map",
        Tag::OptionSome => "some",
        Tag::ResultOk => "ok",
        Tag::ResultErr => "err",
        Tag::Variant => "variant",
    }
}
