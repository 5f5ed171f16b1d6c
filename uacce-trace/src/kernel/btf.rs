//! Minimal, dependency-free reader of kernel BTF (BPF Type Format), the format
//! of `/sys/kernel/btf/vmlinux`.
//!
//! Its job: answer the few questions `uacce-trace` asks of the running
//! kernel's types while it plans its hooks: does a kernel function exist and
//! how many parameters does it take ([`Btf::func`]), what is the value of an
//! enumerator constant ([`Btf::enum_value`]) and where does a possibly nested
//! struct member live ([`Btf::member`]). aya 0.14 has no public API for
//! enumerating enum values or member offsets, hence this module.
//!
//! It must not depend on aya, tokio or any crate other than `std` and
//! `thiserror`, and it does no I/O except in [`Btf::from_file`] (and
//! [`Btf::from_sys_fs`]); [`Btf::parse`] does the work on bytes already in
//! memory. Module BTF (split BTF on top of vmlinux) is not read: the tool
//! hooks only functions of the kernel image (uacce built as a module would
//! need it for fentry; the kprobe path needs no BTF).
//!
//! Layout reference: the kernel's `include/uapi/linux/btf.h` and
//! `Documentation/bpf/btf.rst`. Only little-endian BTF (version 1) is
//! accepted.
//!
//! Design: the raw bytes are kept and indexed (one byte offset per type id,
//! plus hash-sorted name indexes for types and enumerators) rather than
//! materialising every type. Every read is bounds-checked: malformed input
//! yields a [`BtfError`] from the parser or `None` from a query, never a
//! panic, and every walk through type references is bounded so that cyclic
//! input cannot loop forever.

use std::fmt;
use std::path::{Path, PathBuf};

/// The running kernel's own BTF.
pub const SYS_FS_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `0xeB9F` as stored little-endian.
const MAGIC_LE: [u8; 2] = [0x9f, 0xeb];
/// `0xeB9F` as stored big-endian.
const MAGIC_BE: [u8; 2] = [0xeb, 0x9f];
const VERSION: u8 = 1;
/// Size of `struct btf_header` (version 1).
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type` (name_off, info, size/type).
const TYPE_HEADER_LEN: usize = 12;
/// Bits of `btf_type.info` that may be set: vlen (0-15), kind (24-28),
/// kind_flag (31). The kernel rejects anything else.
const INFO_MASK: u32 = 0x9f00_ffff;
/// Longest typedef/modifier chain or anonymous-member nesting followed.
const MAX_DEPTH: usize = 64;
/// Most member records one [`Btf::member`] query may visit (bounds the work
/// on hostile input whose anonymous members refer to each other).
const MAX_MEMBER_VISITS: usize = 1 << 20;

// Sizes of the kind-specific records that follow `struct btf_type`.
/// `btf_member`, `btf_array`, `btf_var_secinfo`, `btf_enum64`.
const REC12: usize = 12;
/// `btf_enum`, `btf_param`.
const REC8: usize = 8;

/// Errors from reading or parsing BTF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read BTF from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Fewer bytes than the BTF header needs.
    #[error("BTF data too short: {len} bytes, the header needs at least {needed}")]
    TooShort { len: usize, needed: usize },
    /// The magic is 0xeB9F stored big-endian.
    #[error("BTF data is big-endian (magic bytes eb 9f); only little-endian BTF is supported")]
    BigEndian,
    /// The first two bytes are not the BTF magic at all.
    #[error("not BTF data: magic bytes {found:02x?}, expected [9f, eb] (0xeB9F little-endian)")]
    BadMagic { found: [u8; 2] },
    /// Header version other than 1.
    #[error("unsupported BTF version {version}, only version {VERSION} is supported")]
    UnsupportedVersion { version: u8 },
    /// `hdr_len` smaller than the version-1 header or larger than the data.
    #[error("bad BTF header length {hdr_len}: must be at least {HEADER_LEN} and at most the data length {len}")]
    BadHeaderLen { hdr_len: u32, len: usize },
    /// A section's offset/length (relative to the end of the header) leaves the data.
    #[error(
        "BTF {section} section (offset {offset}, length {len} after the {hdr_len}-byte header) \
         does not fit in the {data_len}-byte data"
    )]
    SectionOutOfBounds {
        section: &'static str,
        offset: u32,
        len: u32,
        hdr_len: u32,
        data_len: usize,
    },
    /// The string section is empty, not NUL-terminated, or does not start
    /// with the empty string.
    #[error("bad BTF string section: {reason}")]
    BadStringSection { reason: &'static str },
    /// A type record runs past the end of the type section.
    #[error(
        "BTF type {type_id} at byte {offset} of the type section is truncated: \
         it needs {needed} bytes, {available} are left"
    )]
    TruncatedType {
        type_id: u32,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// `info` has bits set that no BTF version defines.
    #[error("BTF type {type_id} at byte {offset} of the type section has invalid info word {info:#010x}")]
    BadInfo {
        type_id: u32,
        offset: usize,
        info: u32,
    },
    /// `info` names a kind this parser does not know (0 or above ENUM64).
    #[error("BTF type {type_id} at byte {offset} of the type section has unknown kind {kind}")]
    UnknownKind {
        type_id: u32,
        offset: usize,
        kind: u32,
    },
    /// A name offset points outside the string section.
    #[error("BTF type {type_id}: {what} offset {name_off} is outside the string section ({str_len} bytes)")]
    BadNameOffset {
        type_id: u32,
        what: &'static str,
        name_off: u32,
        str_len: u64,
    },
    /// A reference to a type id that does not exist.
    #[error(
        "BTF type {type_id}: {what} refers to type {target}, but the last type id is {last_id}"
    )]
    BadTypeRef {
        type_id: u32,
        what: &'static str,
        target: u32,
        last_id: u32,
    },
    /// More types than fit in a `u32` type id.
    #[error("too many BTF types: type ids overflow u32")]
    TooManyTypes,
}

/// The kind of a BTF type (`BTF_KIND_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BtfKind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl BtfKind {
    fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Int,
            2 => Self::Ptr,
            3 => Self::Array,
            4 => Self::Struct,
            5 => Self::Union,
            6 => Self::Enum,
            7 => Self::Fwd,
            8 => Self::Typedef,
            9 => Self::Volatile,
            10 => Self::Const,
            11 => Self::Restrict,
            12 => Self::Func,
            13 => Self::FuncProto,
            14 => Self::Var,
            15 => Self::Datasec,
            16 => Self::Float,
            17 => Self::DeclTag,
            18 => Self::TypeTag,
            19 => Self::Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after the 12-byte `struct btf_type`.
    fn extra_len(self, vlen: usize) -> usize {
        match self {
            Self::Int | Self::Var | Self::DeclTag => 4,
            Self::Array => REC12,
            Self::Struct | Self::Union | Self::Datasec | Self::Enum64 => REC12 * vlen,
            Self::Enum | Self::FuncProto => REC8 * vlen,
            Self::Ptr
            | Self::Fwd
            | Self::Typedef
            | Self::Volatile
            | Self::Const
            | Self::Restrict
            | Self::Func
            | Self::Float
            | Self::TypeTag => 0,
        }
    }

    /// Kinds whose `size_or_type` field is a type id.
    fn refers_to_type(self) -> bool {
        matches!(
            self,
            Self::Ptr
                | Self::Typedef
                | Self::Volatile
                | Self::Const
                | Self::Restrict
                | Self::Func
                | Self::FuncProto
                | Self::Var
                | Self::DeclTag
                | Self::TypeTag
        )
    }

    /// Kinds that only qualify or rename another type.
    fn is_alias(self) -> bool {
        matches!(
            self,
            Self::Typedef | Self::Const | Self::Volatile | Self::Restrict | Self::TypeTag
        )
    }

    fn is_composite(self) -> bool {
        matches!(self, Self::Struct | Self::Union)
    }
}

/// A kernel function found in BTF (`BTF_KIND_FUNC` resolved through its
/// `BTF_KIND_FUNC_PROTO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncInfo {
    pub name: String,
    /// Parameter names in order (empty where BTF has none); a trailing
    /// `...` is not included.
    pub params: Vec<String>,
}

/// A struct/union member found by [`Btf::member`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The last element of the path.
    pub name: String,
    /// `bit_offset / 8`, relative to the start of the outermost struct.
    pub offset_bytes: u32,
    /// Offset in bits relative to the start of the outermost struct.
    pub bit_offset: u32,
    /// Width in bits if the member is a bitfield.
    pub bitfield_size: Option<u32>,
}

/// `(fnv1a(name), type id)`, sorted.
type NameIndex = Vec<(u32, u32)>;
/// `(fnv1a(name), enum type id, enumerator index)`, sorted.
type EnumeratorIndex = Vec<(u32, u32, u32)>;

/// Parsed BTF: the raw bytes plus indexes. Cheap to query; immutable.
pub struct Btf {
    data: Vec<u8>,
    types_start: usize,
    types_end: usize,
    strs_start: usize,
    strs_end: usize,
    /// Byte offset within the type section of each type; element 0 is type
    /// id 1.
    type_offsets: Vec<u32>,
    last_id: u32,
    /// `(fnv1a(name), type id)` of every named type, sorted.
    name_index: NameIndex,
    /// `(fnv1a(name), enum type id, enumerator index)` of every named
    /// enumerator, sorted.
    enumerator_index: EnumeratorIndex,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("bytes", &self.data.len())
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

/// Little-endian `u32` at `off`, if it fits.
fn read_u32(buf: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let bytes: [u8; 4] = buf.get(off..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// 32-bit FNV-1a, used only to bucket names in the sorted indexes.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// One decoded `struct btf_type` plus a view of its kind-specific data.
#[derive(Clone, Copy)]
struct RawType<'a> {
    name_off: u32,
    kind: BtfKind,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    extra: &'a [u8],
}

enum DecodeError {
    Truncated { needed: usize, available: usize },
    BadInfo(u32),
    UnknownKind(u32),
}

impl<'a> RawType<'a> {
    fn decode(section: &'a [u8], off: usize) -> Result<Self, DecodeError> {
        let available = section.len().saturating_sub(off);
        let header = (
            read_u32(section, off),
            read_u32(section, off.saturating_add(4)),
            read_u32(section, off.saturating_add(8)),
        );
        let (Some(name_off), Some(info), Some(size_or_type)) = header else {
            return Err(DecodeError::Truncated {
                needed: TYPE_HEADER_LEN,
                available,
            });
        };
        if info & !INFO_MASK != 0 {
            return Err(DecodeError::BadInfo(info));
        }
        let raw_kind = (info >> 24) & 0x1f;
        let kind = BtfKind::from_raw(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
        let vlen = (info & 0xffff) as usize;
        let needed = TYPE_HEADER_LEN + kind.extra_len(vlen);
        let extra = off
            .checked_add(TYPE_HEADER_LEN)
            .zip(off.checked_add(needed))
            .and_then(|(start, end)| section.get(start..end))
            .ok_or(DecodeError::Truncated { needed, available })?;
        Ok(Self {
            name_off,
            kind,
            vlen,
            kind_flag: info >> 31 != 0,
            size_or_type,
            extra,
        })
    }

    /// Field `field` (a `u32` index) of record `i` of `rec_size` bytes.
    fn rec(&self, i: usize, rec_size: usize, field: usize) -> Option<u32> {
        let off = i
            .checked_mul(rec_size)?
            .checked_add(field.checked_mul(4)?)?;
        read_u32(self.extra, off)
    }

    fn len(&self) -> usize {
        TYPE_HEADER_LEN + self.extra.len()
    }
}

/// A member located inside one composite by [`Btf::find_member`].
#[derive(Clone, Copy)]
struct Found {
    name_off: u32,
    type_id: u32,
    /// Bits from the start of the composite searched.
    bit_offset: u32,
    bitfield_size: Option<u32>,
}

impl Btf {
    /// Reads and parses a standalone BTF file (such as `/sys/kernel/btf/vmlinux`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, BtfError> {
        Self::parse(Self::read(path.as_ref())?)
    }

    /// Reads and parses the running kernel's BTF, [`SYS_FS_VMLINUX`].
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(SYS_FS_VMLINUX)
    }

    fn read(path: &Path) -> Result<Vec<u8>, BtfError> {
        std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses BTF; type ids start at 1.
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let too_short = BtfError::TooShort {
            len: data.len(),
            needed: HEADER_LEN,
        };
        let magic: [u8; 2] = data
            .get(..2)
            .and_then(|m| m.try_into().ok())
            .ok_or(too_short)?;
        if magic == MAGIC_BE {
            return Err(BtfError::BigEndian);
        }
        if magic != MAGIC_LE {
            return Err(BtfError::BadMagic { found: magic });
        }
        let header = (
            data.get(2),
            read_u32(&data, 4),
            read_u32(&data, 8),
            read_u32(&data, 12),
            read_u32(&data, 16),
            read_u32(&data, 20),
        );
        let (
            Some(&version),
            Some(hdr_len),
            Some(type_off),
            Some(type_len),
            Some(str_off),
            Some(str_len),
        ) = header
        else {
            return Err(BtfError::TooShort {
                len: data.len(),
                needed: HEADER_LEN,
            });
        };
        if version != VERSION {
            return Err(BtfError::UnsupportedVersion { version });
        }
        let hdr = hdr_len as usize;
        if hdr < HEADER_LEN || hdr > data.len() {
            return Err(BtfError::BadHeaderLen {
                hdr_len,
                len: data.len(),
            });
        }
        // Bytes between the version-1 header and `hdr_len` belong to newer
        // header fields; they are ignored.
        let section = |name: &'static str, off: u32, len: u32| {
            hdr.checked_add(off as usize)
                .and_then(|start| Some((start, start.checked_add(len as usize)?)))
                .filter(|&(_, end)| end <= data.len())
                .ok_or(BtfError::SectionOutOfBounds {
                    section: name,
                    offset: off,
                    len,
                    hdr_len,
                    data_len: data.len(),
                })
        };
        let (types_start, types_end) = section("type", type_off, type_len)?;
        let (strs_start, strs_end) = section("string", str_off, str_len)?;

        let strs = data.get(strs_start..strs_end).unwrap_or_default();
        if strs.last() != Some(&0) {
            return Err(BtfError::BadStringSection {
                reason: if strs.is_empty() {
                    "it is empty"
                } else {
                    "it does not end with a NUL byte"
                },
            });
        }
        if strs.first() != Some(&0) {
            return Err(BtfError::BadStringSection {
                reason: "it does not start with the empty string",
            });
        }

        let types = data.get(types_start..types_end).unwrap_or_default();
        let mut type_offsets = Vec::with_capacity(types.len() / 32);
        let mut off = 0usize;
        while off < types.len() {
            let type_id = u32::try_from(type_offsets.len())
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or(BtfError::TooManyTypes)?;
            let raw = RawType::decode(types, off).map_err(|e| match e {
                DecodeError::Truncated { needed, available } => BtfError::TruncatedType {
                    type_id,
                    offset: off,
                    needed,
                    available,
                },
                DecodeError::BadInfo(info) => BtfError::BadInfo {
                    type_id,
                    offset: off,
                    info,
                },
                DecodeError::UnknownKind(kind) => BtfError::UnknownKind {
                    type_id,
                    offset: off,
                    kind,
                },
            })?;
            // `types` is at most u32::MAX bytes long (its length is a u32).
            type_offsets.push(u32::try_from(off).map_err(|_| BtfError::TooManyTypes)?);
            off = off.saturating_add(raw.len());
        }
        let count = u32::try_from(type_offsets.len()).map_err(|_| BtfError::TooManyTypes)?;
        let last_id = count;

        let mut btf = Btf {
            data,
            types_start,
            types_end,
            strs_start,
            strs_end,
            type_offsets,
            last_id,
            name_index: Vec::new(),
            enumerator_index: Vec::new(),
        };
        let (name_index, enumerator_index) = btf.validate_and_index()?;
        btf.name_index = name_index;
        btf.enumerator_index = enumerator_index;
        Ok(btf)
    }

    /// Checks every name offset and type reference of the types and
    /// builds the name indexes.
    fn validate_and_index(&self) -> Result<(NameIndex, EnumeratorIndex), BtfError> {
        let mut names = Vec::with_capacity(self.type_offsets.len());
        let mut enumerators = Vec::new();
        let str_len = u64::from(self.str_end());
        for (id, &offset) in (1u32..).zip(&self.type_offsets) {
            let offset = offset as usize;
            // Decoding succeeded during the walk, so the type and its records
            // exist; a failure here would be a bug, reported as truncation.
            let truncated = || BtfError::TruncatedType {
                type_id: id,
                offset,
                needed: TYPE_HEADER_LEN,
                available: self.types().len().saturating_sub(offset),
            };
            let t = RawType::decode(self.types(), offset).map_err(|_| truncated())?;
            let name = |what: &'static str, name_off: u32| {
                self.str_bytes(name_off).ok_or(BtfError::BadNameOffset {
                    type_id: id,
                    what,
                    name_off,
                    str_len,
                })
            };
            let check_ref = |what: &'static str, target: u32| {
                if target > self.last_id {
                    Err(BtfError::BadTypeRef {
                        type_id: id,
                        what,
                        target,
                        last_id: self.last_id,
                    })
                } else {
                    Ok(())
                }
            };
            let type_name = name("type name", t.name_off)?;
            if !type_name.is_empty() {
                names.push((fnv1a(type_name), id));
            }
            if t.kind.refers_to_type() {
                check_ref("referenced type", t.size_or_type)?;
            }
            match t.kind {
                BtfKind::Array => {
                    check_ref(
                        "array element type",
                        t.rec(0, REC12, 0).ok_or_else(truncated)?,
                    )?;
                    check_ref(
                        "array index type",
                        t.rec(0, REC12, 1).ok_or_else(truncated)?,
                    )?;
                }
                BtfKind::Struct | BtfKind::Union => {
                    for i in 0..t.vlen {
                        name("member name", t.rec(i, REC12, 0).ok_or_else(truncated)?)?;
                        check_ref("member type", t.rec(i, REC12, 1).ok_or_else(truncated)?)?;
                    }
                }
                BtfKind::Enum | BtfKind::Enum64 => {
                    let rec = if t.kind == BtfKind::Enum { REC8 } else { REC12 };
                    for i in 0..t.vlen {
                        let n = name("enumerator name", t.rec(i, rec, 0).ok_or_else(truncated)?)?;
                        if !n.is_empty() {
                            // vlen is at most 0xffff.
                            enumerators.push((fnv1a(n), id, i as u32));
                        }
                    }
                }
                BtfKind::FuncProto => {
                    for i in 0..t.vlen {
                        name("parameter name", t.rec(i, REC8, 0).ok_or_else(truncated)?)?;
                        check_ref("parameter type", t.rec(i, REC8, 1).ok_or_else(truncated)?)?;
                    }
                }
                BtfKind::Datasec => {
                    for i in 0..t.vlen {
                        check_ref(
                            "section variable",
                            t.rec(i, REC12, 0).ok_or_else(truncated)?,
                        )?;
                    }
                }
                _ => {}
            }
        }
        names.sort_unstable();
        enumerators.sort_unstable();
        Ok((names, enumerators))
    }

    fn types(&self) -> &[u8] {
        self.data
            .get(self.types_start..self.types_end)
            .unwrap_or_default()
    }

    fn strs(&self) -> &[u8] {
        self.data
            .get(self.strs_start..self.strs_end)
            .unwrap_or_default()
    }

    /// One past the last valid string offset.
    fn str_end(&self) -> u32 {
        u32::try_from(self.strs().len()).unwrap_or(u32::MAX)
    }

    /// The NUL-terminated string at `off`, without the NUL.
    fn str_bytes(&self, off: u32) -> Option<&[u8]> {
        let tail = self.strs().get(off as usize..)?;
        let nul = tail.iter().position(|&b| b == 0)?;
        tail.get(..nul)
    }

    fn str_lossy(&self, off: u32) -> String {
        self.str_bytes(off)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    fn raw(&self, id: u32) -> Option<RawType<'_>> {
        let off = *self.type_offsets.get((id as usize).checked_sub(1)?)?;
        RawType::decode(self.types(), off as usize).ok()
    }

    /// The last valid type id (ids `1..=last_type_id()` exist; 0 is `void`).
    pub fn last_type_id(&self) -> u32 {
        self.last_id
    }

    /// Kind of type `id`; `None` for 0 (`void`) or an unknown id.
    fn kind(&self, id: u32) -> Option<BtfKind> {
        self.raw(id).map(|t| t.kind)
    }

    /// Ids of all types (of any kind) named exactly `name`, in id order.
    fn type_ids_by_name(&self, name: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.collect_named(name.as_bytes(), &mut out);
        out
    }

    fn collect_named(&self, name: &[u8], out: &mut Vec<u32>) {
        let h = fnv1a(name);
        let start = self.name_index.partition_point(|&(hh, _)| hh < h);
        for &(hh, id) in self.name_index.get(start..).unwrap_or_default() {
            if hh != h {
                break;
            }
            if self.raw(id).and_then(|t| self.str_bytes(t.name_off)) == Some(name) {
                out.push(id);
            }
        }
    }

    /// Strips typedefs and qualifiers (const, volatile, restrict, type tags).
    /// Returns 0 for `void`; `None` on a dangling id or an over-long chain.
    fn strip(&self, mut id: u32) -> Option<u32> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Some(0);
            }
            let t = self.raw(id)?;
            if !t.kind.is_alias() {
                return Some(id);
            }
            id = t.size_or_type;
        }
        None
    }

    /// `id` with typedefs/qualifiers stripped, if that is a struct or union.
    fn composite(&self, id: u32) -> Option<u32> {
        let id = self.strip(id)?;
        self.raw(id).filter(|t| t.kind.is_composite()).map(|_| id)
    }

    /// The kernel function `name` (first match in id order), with its
    /// parameters resolved through the `FUNC_PROTO`. `None` if BTF has no
    /// such function (e.g. it was inlined or the kernel lacks it).
    pub fn func(&self, name: &str) -> Option<FuncInfo> {
        self.type_ids_by_name(name)
            .into_iter()
            .find_map(|id| self.func_info(id))
    }

    /// [`FuncInfo`] of the `FUNC` with type id `id`.
    fn func_info(&self, id: u32) -> Option<FuncInfo> {
        let func = self.raw(id).filter(|t| t.kind == BtfKind::Func)?;
        let proto_id = func.size_or_type;
        let proto = self
            .raw(proto_id)
            .filter(|t| t.kind == BtfKind::FuncProto)?;
        let mut params = Vec::with_capacity(proto.vlen);
        for i in 0..proto.vlen {
            let name_off = proto.rec(i, REC8, 0)?;
            let type_id = proto.rec(i, REC8, 1)?;
            if i + 1 == proto.vlen && name_off == 0 && type_id == 0 {
                // A trailing `...`.
                continue;
            }
            params.push(self.str_lossy(name_off));
        }
        Some(FuncInfo {
            name: self.str_lossy(func.name_off),
            params,
        })
    }

    /// Value of the enumerator constant `name`, searched in every ENUM and
    /// ENUM64 type, anonymous ones included (first match in id order).
    ///
    /// Signedness follows the enum's kind_flag (1 = signed): a signed 32-bit
    /// enum's `-1` is `-1`, an unsigned one's `0xffffffff` is `4294967295`.
    /// Unsigned 64-bit values above `i64::MAX` are returned bit-for-bit
    /// (`u64::MAX` reads as `-1`; cast back with `as u64`).
    pub fn enum_value(&self, name: &str) -> Option<i64> {
        let mut out = Vec::new();
        self.collect_enumerators(name.as_bytes(), &mut out, true);
        out.first().copied()
    }

    fn collect_enumerators(&self, name: &[u8], out: &mut Vec<i64>, first_only: bool) {
        let h = fnv1a(name);
        let start = self.enumerator_index.partition_point(|&(hh, _, _)| hh < h);
        for &(hh, id, i) in self.enumerator_index.get(start..).unwrap_or_default() {
            if hh != h {
                break;
            }
            let Some(t) = self.raw(id) else { continue };
            let i = i as usize;
            let value = match t.kind {
                BtfKind::Enum => t.rec(i, REC8, 0).zip(t.rec(i, REC8, 1)).map(|(n, v)| {
                    let v = if t.kind_flag {
                        i64::from(v.cast_signed())
                    } else {
                        i64::from(v)
                    };
                    (n, v)
                }),
                BtfKind::Enum64 => t
                    .rec(i, REC12, 0)
                    .zip(t.rec(i, REC12, 1))
                    .zip(t.rec(i, REC12, 2))
                    .map(|((n, lo), hi)| {
                        (n, ((u64::from(hi) << 32) | u64::from(lo)).cast_signed())
                    }),
                _ => None,
            };
            let Some((name_off, value)) = value else {
                continue;
            };
            if self.str_bytes(name_off) == Some(name) {
                out.push(value);
                if first_only {
                    return;
                }
            }
        }
    }

    /// Locates `path`, a dot-separated member path such as `"pasid"` or
    /// `"prm.pasid"`, inside the struct or union `struct_name`.
    ///
    /// * Anonymous struct/union members are searched transparently, as C does.
    /// * Path elements before the last must be embedded structs/unions
    ///   (through typedefs/qualifiers); a pointer or any other type there
    ///   gives `None`.
    /// * When several types are named `struct_name`, complete struct/union
    ///   definitions are tried in id order, then typedefs that resolve to one.
    ///
    /// Offsets are relative to the start of `struct_name`.
    pub fn member(&self, struct_name: &str, path: &str) -> Option<Member> {
        let ids = self.type_ids_by_name(struct_name);
        let composite_first = ids
            .iter()
            .filter(|&&id| self.kind(id).is_some_and(BtfKind::is_composite))
            .chain(
                ids.iter()
                    .filter(|&&id| self.kind(id).is_some_and(BtfKind::is_alias)),
            );
        composite_first
            .filter_map(|&id| self.member_in(id, path))
            .next()
    }

    /// Like [`Btf::member`] but the outer type is given by id (typedefs and
    /// qualifiers are stripped).
    fn member_in(&self, type_id: u32, path: &str) -> Option<Member> {
        let mut budget = MAX_MEMBER_VISITS;
        let mut current = type_id;
        let mut bits: u64 = 0;
        let mut found: Option<Found> = None;
        for part in path.split('.') {
            if part.is_empty() {
                return None;
            }
            if let Some(prev) = found {
                current = prev.type_id;
            }
            let composite = self.composite(current)?;
            let f = self.find_member(composite, part.as_bytes(), 0, &mut budget)?;
            bits = bits.checked_add(u64::from(f.bit_offset))?;
            found = Some(f);
        }
        let f = found?;
        let bit_offset = u32::try_from(bits).ok()?;
        Some(Member {
            name: self.str_lossy(f.name_off),
            offset_bytes: bit_offset / 8,
            bit_offset,
            bitfield_size: f.bitfield_size,
        })
    }

    /// Searches the members of composite `id` for `name`, descending into
    /// anonymous struct/union members.
    fn find_member(&self, id: u32, name: &[u8], depth: usize, budget: &mut usize) -> Option<Found> {
        if depth > MAX_DEPTH {
            return None;
        }
        let t = self.raw(id).filter(|t| t.kind.is_composite())?;
        for i in 0..t.vlen {
            *budget = budget.checked_sub(1)?;
            let (Some(name_off), Some(type_id), Some(offset)) =
                (t.rec(i, REC12, 0), t.rec(i, REC12, 1), t.rec(i, REC12, 2))
            else {
                return None;
            };
            let (bit_offset, bitfield_size) = self.decode_member_offset(&t, type_id, offset);
            let member_name = self.str_bytes(name_off).unwrap_or_default();
            if member_name == name {
                return Some(Found {
                    name_off,
                    type_id,
                    bit_offset,
                    bitfield_size,
                });
            }
            if member_name.is_empty() {
                if let Some(inner) = self.composite(type_id) {
                    if let Some(mut f) = self.find_member(inner, name, depth + 1, budget) {
                        f.bit_offset = f.bit_offset.checked_add(bit_offset)?;
                        return Some(f);
                    }
                }
            }
        }
        None
    }

    /// `(bit offset, bitfield size)` of a member record. With kind_flag set
    /// the offset word holds `bitfield_size << 24 | bit_offset`; without it,
    /// bitfields are encoded in the member's INT type (`nr_bits`, `offset`).
    fn decode_member_offset(
        &self,
        composite: &RawType<'_>,
        type_id: u32,
        offset: u32,
    ) -> (u32, Option<u32>) {
        if composite.kind_flag {
            let size = offset >> 24;
            return (offset & 0x00ff_ffff, (size != 0).then_some(size));
        }
        if let Some(int) = self.raw(type_id).filter(|t| t.kind == BtfKind::Int) {
            if let Some(encoding) = int.rec(0, 4, 0) {
                let nr_bits = encoding & 0xff;
                let int_offset = (encoding >> 16) & 0xff;
                let full = int.size_or_type.checked_mul(8);
                if int_offset != 0 || full != Some(nr_bits) {
                    return (offset.saturating_add(int_offset), Some(nr_bits));
                }
            }
        }
        (offset, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const INT: u32 = 1;
    const PTR: u32 = 2;
    const ARRAY: u32 = 3;
    const STRUCT: u32 = 4;
    const UNION: u32 = 5;
    const ENUM: u32 = 6;
    const FWD: u32 = 7;
    const TYPEDEF: u32 = 8;
    const VOLATILE: u32 = 9;
    const CONST: u32 = 10;
    const RESTRICT: u32 = 11;
    const FUNC: u32 = 12;
    const FUNC_PROTO: u32 = 13;
    const VAR: u32 = 14;
    const DATASEC: u32 = 15;
    const FLOAT: u32 = 16;
    const DECL_TAG: u32 = 17;
    const TYPE_TAG: u32 = 18;
    const ENUM64: u32 = 19;

    /// Encodes BTF blobs for tests.
    struct Builder {
        types: Vec<u8>,
        strs: Vec<u8>,
        next_id: u32,
        str_base: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strs: vec![0],
                next_id: 1,
                str_base: 0,
            }
        }

        /// Adds a string, returning its offset (0 for "").
        fn s(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.str_base + self.strs.len() as u32;
            self.strs.extend_from_slice(s.as_bytes());
            self.strs.push(0);
            off
        }

        /// Adds a type; returns its id.
        fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kflag: bool,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = self.s(name);
            let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
            for w in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn finish(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            let type_len = self.types.len() as u32;
            for w in [24, 0, type_len, type_len, self.strs.len() as u32] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strs);
            out
        }
    }

    /// Synthetic BTF covering every kind:
    ///
    /// ```c
    /// typedef unsigned int u32;
    /// struct foo;                      // FWD before the definition
    /// struct bar;                      // FWD, pointee of foo.next
    /// struct foo {                     // size 24, kind_flag (bitfield encoding)
    ///     int x;                       // @0
    ///     union {                      // @4
    ///         u32 pasid;
    ///         struct { u32 lo; };
    ///     };
    ///     unsigned int flag:3;         // bit 64
    ///     unsigned int mode:5;         // bit 67
    ///     struct bar *next;            // @16
    /// };
    /// struct bar { int id; struct foo f; int arr[4]; };    // f@8, arr@32, size 48
    /// struct old { int a; unsigned int b:4 (legacy INT-encoded bitfield at bit 36) };
    /// enum { A_ONE = 1, A_NEG = -1 };          // signed
    /// enum uns { U_BIG = 0x80000000 };         // unsigned
    /// enum e64 { BIG = 1 << 40, HUGE = ~0ULL };
    /// int do_thing(int x, struct foo *p);
    /// static void log_it(const char *fmt, ...);
    /// ```
    fn sample() -> (Vec<u8>, u32) {
        let mut b = Builder::new();
        let int = b.ty("int", INT, 0, false, 4, &[(1 << 24) | 32]);
        let uint = b.ty("unsigned int", INT, 0, false, 4, &[32]);
        let u32_t = b.ty("u32", TYPEDEF, 0, false, uint, &[]);
        let _fwd_foo = b.ty("foo", FWD, 0, false, 0, &[]);
        let fwd_bar = b.ty("bar", FWD, 0, false, 0, &[]);
        let ptr_bar = b.ty("", PTR, 0, false, fwd_bar, &[]);
        let lo = b.s("lo");
        let anon_struct = b.ty("", STRUCT, 1, false, 4, &[lo, u32_t, 0]);
        let pasid = b.s("pasid");
        let anon_union = b.ty(
            "",
            UNION,
            2,
            false,
            4,
            &[pasid, u32_t, 0, 0, anon_struct, 0],
        );
        let (x, flag, mode, next) = (b.s("x"), b.s("flag"), b.s("mode"), b.s("next"));
        #[rustfmt::skip]
        let foo = b.ty("foo", STRUCT, 5, true, 24, &[
            x, int, 0,
            0, anon_union, 32,
            flag, uint, (3 << 24) | 64,
            mode, uint, (5 << 24) | 67,
            next, ptr_bar, 128,
        ]);
        let arr_t = b.ty("", ARRAY, 0, false, 0, &[int, int, 4]);
        let (id, f, arr) = (b.s("id"), b.s("f"), b.s("arr"));
        b.ty(
            "bar",
            STRUCT,
            3,
            false,
            48,
            &[id, int, 0, f, foo, 64, arr, arr_t, 256],
        );
        let bits4 = b.ty("unsigned int", INT, 0, false, 4, &[(4 << 16) | 4]);
        let (a, bb) = (b.s("a"), b.s("b"));
        b.ty("old", STRUCT, 2, false, 8, &[a, int, 0, bb, bits4, 32]);
        let (one, neg) = (b.s("A_ONE"), b.s("A_NEG"));
        b.ty("", ENUM, 2, true, 4, &[one, 1, neg, u32::MAX]);
        let big = b.s("U_BIG");
        b.ty("uns", ENUM, 1, false, 4, &[big, 0x8000_0000]);
        let (big, huge) = (b.s("BIG"), b.s("HUGE"));
        b.ty(
            "e64",
            ENUM64,
            2,
            false,
            8,
            &[big, 0, 1 << 8, huge, u32::MAX, u32::MAX],
        );
        let ptr_foo = b.ty("", PTR, 0, false, foo, &[]);
        let p = b.s("p");
        let proto = b.ty("", FUNC_PROTO, 2, false, int, &[x, int, p, ptr_foo]);
        let do_thing = b.ty("do_thing", FUNC, 1, false, proto, &[]);
        let chr = b.ty("char", INT, 0, false, 1, &[(2 << 24) | 8]);
        let cchr = b.ty("", CONST, 0, false, chr, &[]);
        let pcchr = b.ty("", PTR, 0, false, cchr, &[]);
        let fmt = b.s("fmt");
        let vproto = b.ty("", FUNC_PROTO, 2, false, 0, &[fmt, pcchr, 0, 0]);
        b.ty("log_it", FUNC, 0, false, vproto, &[]);
        // Remaining kinds, for parser coverage.
        b.ty("double", FLOAT, 0, false, 8, &[]);
        let user = b.ty("user", TYPE_TAG, 0, false, chr, &[]);
        b.ty("", PTR, 0, false, user, &[]);
        let vol = b.ty("", VOLATILE, 0, false, int, &[]);
        b.ty("", RESTRICT, 0, false, pcchr, &[]);
        b.ty("tag", DECL_TAG, 0, false, do_thing, &[u32::MAX]);
        let var = b.ty("gvar", VAR, 0, false, vol, &[1]);
        b.ty(".data", DATASEC, 1, false, 4, &[var, 0, 4]);
        (b.finish(), do_thing)
    }

    #[test]
    fn synthetic_blob_all_apis() {
        let (blob, _) = sample();
        let btf = Btf::parse(blob).expect("sample parses");

        assert_eq!(btf.type_ids_by_name("foo").len(), 2, "FWD + STRUCT foo");
        assert_eq!(btf.kind(1), Some(BtfKind::Int));
        assert_eq!(btf.kind(0), None);
        assert_eq!(btf.kind(btf.last_type_id() + 1), None);
        assert_eq!(btf.kind(btf.last_type_id()), Some(BtfKind::Datasec));

        // The definition is found past the earlier FWD.
        assert!(btf.member("u32", "x").is_none(), "typedef of an int");

        let m = btf.member("foo", "x").expect("foo.x");
        assert_eq!(
            (m.offset_bytes, m.bit_offset, m.bitfield_size),
            (0, 0, None)
        );

        // Through the anonymous union, and the anonymous struct inside it.
        let m = btf.member("foo", "pasid").expect("foo.pasid");
        assert_eq!((m.name.as_str(), m.offset_bytes), ("pasid", 4));
        assert_eq!(btf.member("foo", "lo").map(|o| o.offset_bytes), Some(4));

        // Bitfields (kind_flag encoding).
        let o = btf.member("foo", "mode").expect("foo.mode");
        assert_eq!(
            (o.offset_bytes, o.bit_offset, o.bitfield_size),
            (8, 67, Some(5))
        );
        let o = btf.member("foo", "flag").expect("foo.flag");
        assert_eq!((o.bit_offset, o.bitfield_size), (64, Some(3)));
        // Legacy bitfield encoding in the INT type.
        let o = btf.member("old", "b").expect("old.b");
        assert_eq!(
            (o.offset_bytes, o.bit_offset, o.bitfield_size),
            (4, 36, Some(4))
        );
        assert_eq!(btf.member("old", "a").and_then(|o| o.bitfield_size), None);

        // Pointer members: found, not traversed.
        let m = btf.member("foo", "next").expect("foo.next");
        assert_eq!(m.offset_bytes, 16);
        assert!(btf.member("foo", "next.id").is_none());

        // Nested through an embedded struct.
        assert_eq!(
            btf.member("bar", "f.pasid").map(|o| o.offset_bytes),
            Some(12)
        );
        assert_eq!(btf.member("bar", "f.lo").map(|o| o.offset_bytes), Some(12));
        assert_eq!(
            btf.member("bar", "f.mode").map(|o| o.bit_offset),
            Some(64 + 67)
        );
        assert_eq!(
            btf.member("bar", "f.next").map(|m| m.offset_bytes),
            Some(24)
        );
        let arr = btf.member("bar", "arr").expect("bar.arr");
        assert_eq!(arr.offset_bytes, 32);
        assert!(btf.member("bar", "f.nope").is_none());
        assert!(btf.member("bar", "id.x").is_none(), "int has no members");
        assert!(btf.member("bar", "").is_none());
        assert!(btf.member("bar", "f.").is_none());
        assert!(btf.member("nope", "x").is_none());

        // Enumerators, including the anonymous enum and ENUM64.
        assert_eq!(btf.enum_value("A_ONE"), Some(1));
        assert_eq!(btf.enum_value("A_NEG"), Some(-1));
        assert_eq!(btf.enum_value("U_BIG"), Some(0x8000_0000));
        assert_eq!(btf.enum_value("BIG"), Some(1 << 40));
        assert_eq!(btf.enum_value("HUGE").map(|v| v as u64), Some(u64::MAX));
        assert_eq!(btf.enum_value("FOLL_LONGTERM"), None);

        // Functions.
        let f = btf.func("do_thing").expect("do_thing");
        assert_eq!(f.params, vec!["x", "p"]);
        let f = btf.func("log_it").expect("log_it");
        assert_eq!(f.params, vec!["fmt"], "the trailing ... is not a parameter");
        assert!(btf.func("foo").is_none(), "a struct is not a function");
        assert!(btf.func("missing").is_none());
        let id = |name: &str| btf.type_ids_by_name(name).first().copied().expect(name);
        assert_eq!(btf.kind(id("tag")), Some(BtfKind::DeclTag));
    }

    fn patch_u32(blob: &mut [u8], at: usize, value: u32) {
        blob[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let (good, _) = sample();
        let err = |blob: Vec<u8>| Btf::parse(blob).expect_err("must be rejected");

        assert!(matches!(err(Vec::new()), BtfError::TooShort { .. }));
        assert!(matches!(err(vec![0x9f]), BtfError::TooShort { .. }));
        assert!(matches!(
            err(good[..10].to_vec()),
            BtfError::TooShort { .. }
        ));
        assert!(matches!(
            err(vec![0xeb, 0x9f, 1, 0, 0, 0, 0, 24]),
            BtfError::BigEndian
        ));
        assert!(matches!(
            err(b"\x7fELF\x02\x01\x01\0".to_vec()),
            BtfError::BadMagic { .. }
        ));
        let mut b = good.clone();
        b[2] = 2;
        assert!(matches!(
            err(b),
            BtfError::UnsupportedVersion { version: 2 }
        ));
        let mut b = good.clone();
        patch_u32(&mut b, 4, 8);
        assert!(matches!(err(b), BtfError::BadHeaderLen { .. }));
        let mut b = good.clone();
        patch_u32(&mut b, 4, u32::MAX);
        assert!(matches!(err(b), BtfError::BadHeaderLen { .. }));
        let mut b = good.clone();
        patch_u32(&mut b, 12, u32::MAX); // type_len
        assert!(matches!(
            err(b),
            BtfError::SectionOutOfBounds {
                section: "type",
                ..
            }
        ));
        let mut b = good.clone();
        patch_u32(&mut b, 16, u32::MAX); // str_off
        assert!(matches!(
            err(b),
            BtfError::SectionOutOfBounds {
                section: "string",
                ..
            }
        ));
        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] = b'x';
        assert!(matches!(err(b), BtfError::BadStringSection { .. }));
        let mut b = good.clone();
        b[24 + read_u32(&good, 16).expect("str_off") as usize] = b'x';
        assert!(matches!(err(b), BtfError::BadStringSection { .. }));
        let mut b = good.clone();
        patch_u32(&mut b, 20, 0); // str_len 0
        assert!(matches!(err(b), BtfError::BadStringSection { .. }));
        // Type 1's info word: unknown kind, reserved bits.
        let mut b = good.clone();
        patch_u32(&mut b, 28, 20 << 24);
        assert!(matches!(
            err(b),
            BtfError::UnknownKind {
                type_id: 1,
                kind: 20,
                ..
            }
        ));
        let mut b = good.clone();
        patch_u32(&mut b, 28, 0);
        assert!(matches!(err(b), BtfError::UnknownKind { kind: 0, .. }));
        let mut b = good.clone();
        patch_u32(&mut b, 28, (1 << 24) | (1 << 20));
        assert!(matches!(err(b), BtfError::BadInfo { .. }));
        // Type 1's name offset beyond the strings.
        let mut b = good.clone();
        patch_u32(&mut b, 24, 0xffff);
        assert!(matches!(err(b), BtfError::BadNameOffset { type_id: 1, .. }));
        // Type 3 (typedef u32 at byte 32 of the type section) refers to a missing type.
        let mut b = good.clone();
        patch_u32(&mut b, 24 + 32 + 8, 9999);
        assert!(matches!(
            err(b),
            BtfError::BadTypeRef {
                type_id: 3,
                target: 9999,
                ..
            }
        ));
        // Type section cut mid-record (the string section follows it, so the
        // last DATASEC loses its secinfo).
        let mut b = good.clone();
        let type_len = read_u32(&good, 12).expect("type_len");
        patch_u32(&mut b, 12, type_len - 4);
        assert!(matches!(err(b), BtfError::TruncatedType { .. }));
        // struct foo claims more members than it has: the walk desyncs and
        // must still fail cleanly.
        let mut b = good.clone();
        let mut off = 24;
        loop {
            let info = read_u32(&b, off + 4).expect("info");
            if (info >> 24) & 0x1f == STRUCT && read_u32(&b, off + 8) == Some(24) {
                patch_u32(&mut b, off + 4, info + 1000);
                break;
            }
            let t = RawType::decode(&good[24..], off - 24).ok().expect("walk");
            off += t.len();
        }
        assert!(Btf::parse(b).is_err());

        // Every truncation of a valid blob fails (the header's lengths no longer fit).
        for n in 0..good.len() {
            assert!(
                Btf::parse(good[..n].to_vec()).is_err(),
                "prefix of {n} bytes parsed"
            );
        }
    }

    /// Every query on a parsed blob; must never panic.
    fn exercise(btf: &Btf) {
        for name in ["foo", "bar", "old", "", "u32", "int", "do_thing", "log_it"] {
            let _ = btf.func(name);
            for path in [
                "x", "pasid", "lo", "f.pasid", "f.next", "next.id", "f.mode", "arr", "b",
            ] {
                let _ = btf.member(name, path);
            }
        }
        for name in ["A_ONE", "A_NEG", "U_BIG", "BIG", "HUGE"] {
            let _ = btf.enum_value(name);
        }
        for id in 0..=btf.last_type_id() + 1 {
            let _ = btf.func_info(id);
            let _ = btf.member_in(id, "pasid");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let (good, _) = sample();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut b = good.clone();
            if round % 10 == 0 {
                // Pure garbage after a valid header.
                for byte in b.iter_mut().skip(24) {
                    *byte = next() as u8;
                }
            } else {
                // A few corrupted bytes or words, mostly in the type section.
                for _ in 0..1 + next() % 4 {
                    let at = (next() % b.len() as u64) as usize;
                    if next() % 2 == 0 {
                        b[at] = next() as u8;
                    } else {
                        // Small type ids / string offsets make cycles and
                        // valid-looking references likely.
                        let at = at.min(b.len() - 4);
                        patch_u32(&mut b, at, (next() % 48) as u32);
                    }
                }
            }
            if let Ok(btf) = Btf::parse(b) {
                accepted += 1;
                exercise(&btf);
            }
        }
        eprintln!("garbage_never_panics: {accepted} of 20000 corrupted blobs still parsed");

        // Cycles: a typedef to itself, and an anonymous member whose type is
        // its own struct.
        let mut b = Builder::new();
        let td = b.ty("loop", TYPEDEF, 0, false, 1, &[]);
        assert_eq!(td, 1);
        let x = b.s("x");
        b.ty("cyc", STRUCT, 2, false, 4, &[0, 2, 0, x, 1, 0]);
        b.ty("", CONST, 0, false, 3, &[]);
        let btf = Btf::parse(b.finish()).expect("cyclic but structurally valid");
        assert!(btf.member("loop", "x").is_none());
        assert!(btf.member("cyc", "y").is_none());
        assert!(btf.member("cyc", "x").is_some());
        exercise(&btf);
    }

    #[test]
    fn live_vmlinux() {
        let start = Instant::now();
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(BtfError::Io { path, source })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                crate::test_skip::skip(
                    crate::test_skip::Lack::Host,
                    &format!("cannot read {}: {source}", path.display()),
                );
                return;
            }
            Err(e) => panic!("parsing {SYS_FS_VMLINUX} failed: {e}"),
        };
        let elapsed = start.elapsed();
        eprintln!(
            "live_vmlinux: read+parsed {SYS_FS_VMLINUX} ({} types) in {elapsed:?}{}",
            btf.last_type_id(),
            if cfg!(debug_assertions) {
                " (debug build)"
            } else {
                ""
            }
        );

        let f = btf
            .func("pin_user_pages_fast")
            .expect("pin_user_pages_fast in BTF");
        eprintln!("  pin_user_pages_fast{:?}", f.params);
        assert_eq!(f.params.len(), 4);
        match btf.func("pin_user_pages") {
            Some(f) => eprintln!(
                "  pin_user_pages has {} params: {:?}",
                f.params.len(),
                f.params
            ),
            None => eprintln!("  pin_user_pages not in BTF"),
        }

        let mm = btf.member("task_struct", "mm").expect("task_struct.mm");
        eprintln!("  task_struct.mm: {mm:?}");

        if btf.member("iommu_fault_page_request", "pasid").is_some() {
            for (field, off) in [
                ("flags", 0),
                ("pasid", 4),
                ("grpid", 8),
                ("perm", 12),
                ("addr", 16),
            ] {
                let m = btf.member("iommu_fault_page_request", field).expect(field);
                assert_eq!(m.offset_bytes, off, "iommu_fault_page_request.{field}");
            }
            eprintln!("  iommu_fault_page_request offsets as expected");
        } else {
            eprintln!("  struct iommu_fault_page_request not in this kernel's BTF");
        }
        for path in ["prm.pasid", "prm.grpid", "type"] {
            eprintln!(
                "  iommu_fault.{path}: {:?}",
                btf.member("iommu_fault", path).map(|m| m.offset_bytes)
            );
        }
        eprintln!(
            "  mm_struct.iommu_mm: {:?}",
            btf.member("mm_struct", "iommu_mm").map(|m| m.offset_bytes)
        );

        let foll = btf.enum_value("FOLL_LONGTERM");
        eprintln!("  FOLL_LONGTERM = {foll:?}");
        if let Some(v) = foll {
            assert_eq!(v, 256);
        }
    }
}
