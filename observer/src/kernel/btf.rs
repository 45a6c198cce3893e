//! Struct member offsets and tracepoint prototypes from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux).
//!
//! aya cannot emit CO-RE relocations from Rust, so the probes read kernel structs at offsets
//! computed here at load time and passed in `Config::offsets`. The parser reads just enough of
//! the BTF format (Documentation/bpf/btf.rst) to walk struct and union members, descending into
//! anonymous members the way C field lookup does.
//!
//! It is ours rather than aya-obj's (0.3.0, already in the tree through aya) because aya-obj's
//! `Btf` makes public only `parse`, `id_by_type_name_kind` and `to_bytes`: `type_by_id`,
//! `types`, `string_at` and `type_size` are `pub(crate)`, as are the fields of `Struct`,
//! `Union`, `Typedef`, `Ptr` and `FuncProto` and the `BtfMember` type itself, so a type found by
//! name cannot be looked into. (btf-rs, which could, is LGPL-2.1.)
//!
//! The blob is the kernel's, but the parser treats it as hostile: every length, offset and type
//! id is checked before use, nothing is allocated beyond a small multiple of the input, every
//! walk is bounded, and a cycle or an out-of-range reference is an error, never an answer. The
//! `never_panic` properties below fuzz it on damaged blobs.

use std::{collections::HashSet, ops::Range, path::Path};

use observer_ebpf::{KernelOffsets, NetOffsets};

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why the BTF could not be read, or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The blob breaks the format, or holds a cycle or a chain too long to follow.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No struct of that name with a non-zero size.
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    /// The struct has no such member, directly or in its anonymous members.
    #[error("BTF struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    /// The member is a bitfield, or does not start on a byte: it has no byte offset.
    #[error("BTF member {strukt}.{member} is a bitfield")]
    Bitfield { strukt: String, member: String },
    /// No `btf_trace_<event>` typedef for a pointer to a function prototype.
    #[error("BTF has no prototype for tracepoint {0} (no typedef btf_trace_{0})")]
    NoTracepoint(String),
}

/// `BTF_MAGIC` (btf.rst 2, include/uapi/linux/btf.h): read little-endian; a big-endian blob reads as 0x9feb.
const MAGIC: u16 = 0xeb9f;
/// `BTF_VERSION` (btf.rst 2): the only version there is.
const VERSION: u8 = 1;
/// `sizeof(struct btf_header)` (btf.rst 2); `hdr_len` may be larger, for fields we skip.
const HEADER_LEN: usize = 24;
/// `sizeof(struct btf_type)` (btf.rst 2.2): name_off, info, size/type.
const TYPE_LEN: usize = 12;
/// `sizeof(struct btf_member)`, `struct btf_var_secinfo`, `struct btf_enum64`, and
/// `struct btf_array` (btf.rst 2.2).
const MEMBER_LEN: usize = 12;
/// `sizeof(struct btf_param)` and `struct btf_enum` (btf.rst 2.2).
const PARAM_LEN: usize = 8;
/// The bits of `btf_type.info` that mean something: vlen (0-15), kind (24-28), kind_flag (31);
/// the kernel rejects a type with any other bit set (kernel/bpf/btf.c, `BTF_INFO_MASK`).
const INFO_MASK: u32 = 0x9f00_ffff;
/// `KSYM_NAME_LEN` (include/linux/kallsyms.h): the kernel rejects a type or member name that
/// has no NUL within this many bytes (kernel/bpf/btf.c, `__btf_name_valid()`).
const KSYM_NAME_LEN: usize = 512;
/// How long a chain of types the kernel's own resolver follows (kernel/bpf/btf.c,
/// `MAX_RESOLVE_DEPTH`): no BTF the kernel accepted needs more, so more is an error here.
const MAX_RESOLVE_DEPTH: usize = 32;

// Kinds, `BTF_KIND_*` (btf.rst 2.2).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// `BTF_FUNC_EXTERN` (btf.rst 2.2.12): a FUNC's vlen is its linkage, at most this.
const FUNC_LINKAGE_MAX: usize = 2;

/// A name in the string section: where it starts and how long it is, without its NUL.
#[derive(Debug, Clone, Copy)]
struct Name {
    off: u32,
    len: u32,
}

/// One struct/union member: name (empty when anonymous), type id, bit offset, bitfield size.
#[derive(Debug, Clone)]
struct Member {
    name: Name,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// A struct or union: its size in bytes, and its members in `Btf::members`.
    Composite {
        size: u32,
        members: Range<u32>,
    },
    /// typedef/volatile/const/restrict/type_tag: refers to another type.
    Modifier {
        type_id: u32,
    },
    Pointer {
        type_id: u32,
    },
    /// A function prototype: how many parameters it takes.
    FuncProto {
        params: u32,
    },
    Other,
}

/// The types of one BTF blob, indexed by type id (id 0 is `void`).
pub struct Btf {
    types: Vec<Type>,
    /// Every struct/union's members, one after another.
    members: Vec<Member>,
    /// The string section, which every `Name` points into.
    strings: Vec<u8>,
    /// Named structs of non-zero size, sorted by name, the lowest id first among equals.
    structs: Vec<(Name, u32)>,
    /// Typedefs, sorted the same way.
    typedefs: Vec<(Name, u32)>,
}

/// Reads little-endian words from one section, failing rather than reading past its end.
struct Cursor<'a> {
    data: &'a [u8],
    off: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], BtfError> {
        let end = self.off.checked_add(len).filter(|&end| end <= self.data.len());
        let end = end.ok_or(BtfError::Malformed("type section ends inside a type"))?;
        let bytes = &self.data[self.off..end];
        self.off = end;
        Ok(bytes)
    }

    fn u32(&mut self) -> Result<u32, BtfError> {
        self.take(4).map(le32)
    }
}

/// The little-endian u32 that `b` starts with; `b` has at least 4 bytes.
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The section `off..off + len` after the header, if it lies within `data`.
fn section(data: &[u8], hdr_len: usize, off: u32, len: u32) -> Result<Range<usize>, BtfError> {
    let start = hdr_len.checked_add(off as usize);
    let range = start.and_then(|s| Some(s..s.checked_add(len as usize)?));
    range.filter(|r| r.end <= data.len()).ok_or(BtfError::Malformed("section out of bounds"))
}

/// The name at `off`: NUL-terminated within `KSYM_NAME_LEN` bytes, as the kernel requires.
fn name_at(strings: &[u8], off: u32) -> Result<Name, BtfError> {
    let s = strings.get(off as usize..).ok_or(BtfError::Malformed("name offset out of bounds"))?;
    let len = s.iter().take(KSYM_NAME_LEN).position(|&b| b == 0);
    let len = len.ok_or(BtfError::Malformed("name without a NUL within KSYM_NAME_LEN"))?;
    Ok(Name { off, len: len as u32 })
}

/// The bytes of `name`; empty for a name not from `strings` (there is none).
fn bytes_of(strings: &[u8], name: Name) -> &[u8] {
    strings.get(name.off as usize..).and_then(|s| s.get(..name.len as usize)).unwrap_or(&[])
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    /// Reads the BTF blob at `path`.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path)
            .map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    /// Parses a little-endian BTF blob: its header, its strings, and every type record.
    /// Checks what the answers depend on: section bounds, record lengths, names, member
    /// offsets within their struct, and that every type id a struct member, modifier or
    /// pointer refers to exists.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let header = data.get(..HEADER_LEN).ok_or(BtfError::Malformed("short header"))?;
        if u16::from_le_bytes([header[0], header[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (big-endian BTF is not supported)"));
        }
        if header[2] != VERSION {
            return Err(BtfError::Malformed("unknown BTF version"));
        }
        // header[3] is `flags`: none is defined, and none would change what we read.
        let word = |i: usize| le32(&header[i..]);
        let hdr_len = word(4) as usize;
        if hdr_len < HEADER_LEN {
            return Err(BtfError::Malformed("header shorter than struct btf_header"));
        }
        let types_range = section(data, hdr_len, word(8), word(12))?;
        let strs_range = section(data, hdr_len, word(16), word(20))?;
        if types_range.start < strs_range.end && strs_range.start < types_range.end {
            return Err(BtfError::Malformed("type and string sections overlap"));
        }
        let strings = &data[strs_range];
        // btf.rst 2.1: the first string is the empty one, which name offset 0 means; the kernel
        // also wants the last byte to be a NUL, so every name ends within the section.
        if strings.first() != Some(&0) || strings.last() != Some(&0) {
            return Err(BtfError::Malformed("string section does not start and end with NUL"));
        }

        let type_section = &data[types_range];
        // At most one type per record header: bounded by the input, whatever the vlens say.
        let mut types = Vec::with_capacity(type_section.len() / TYPE_LEN + 1);
        types.push(Type::Other); // id 0: void
        let mut members = Vec::new();
        let mut structs = Vec::new();
        let mut typedefs = Vec::new();
        let mut cur = Cursor { data: type_section, off: 0 };
        while cur.off < type_section.len() {
            let (name_off, info, size_or_type) = (cur.u32()?, cur.u32()?, cur.u32()?);
            let name = name_at(strings, name_off)?;
            if info & !INFO_MASK != 0 {
                return Err(BtfError::Malformed("reserved bits set in a type's info"));
            }
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let id =
                u32::try_from(types.len()).map_err(|_| BtfError::Malformed("too many types"))?;
            // btf.rst 2.2: vlen is 0 for every kind without trailing records but FUNC, whose
            // vlen is its linkage.
            let no_vlen = |ty: Type| match vlen {
                0 => Ok(ty),
                _ => Err(BtfError::Malformed("vlen set on a kind without members")),
            };
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    // Bounds-checked before anything is allocated for them.
                    let records = cur.take(vlen * MEMBER_LEN)?;
                    let first = members.len() as u32;
                    for m in records.chunks_exact(MEMBER_LEN) {
                        let offset = le32(&m[8..]);
                        // btf.rst 2.2.4: with kind_flag, the top 8 bits are a bitfield size.
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (offset & 0xff_ffff, offset >> 24)
                        } else {
                            (offset, 0)
                        };
                        // The kernel rejects a member that starts past its struct's end
                        // (kernel/bpf/btf.c, `btf_struct_check_meta()`).
                        if u64::from(bit_offset) + u64::from(bitfield_size)
                            > u64::from(size_or_type) * 8
                        {
                            return Err(BtfError::Malformed("member past the end of its struct"));
                        }
                        members.push(Member {
                            name: name_at(strings, le32(m))?,
                            type_id: le32(&m[4..]),
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    if name.len > 0 && kind == KIND_STRUCT && size_or_type > 0 {
                        structs.push((name, id));
                    }
                    Type::Composite { size: size_or_type, members: first..members.len() as u32 }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    if kind == KIND_TYPEDEF && name.len > 0 {
                        typedefs.push((name, id));
                    }
                    no_vlen(Type::Modifier { type_id: size_or_type })?
                }
                KIND_PTR => no_vlen(Type::Pointer { type_id: size_or_type })?,
                KIND_FUNC_PROTO => {
                    cur.take(vlen * PARAM_LEN)?;
                    Type::FuncProto { params: vlen as u32 }
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    cur.take(4)?;
                    no_vlen(Type::Other)?
                }
                KIND_ARRAY => {
                    cur.take(MEMBER_LEN)?;
                    no_vlen(Type::Other)?
                }
                KIND_ENUM => {
                    cur.take(vlen * PARAM_LEN)?;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    cur.take(vlen * MEMBER_LEN)?;
                    Type::Other
                }
                KIND_FWD | KIND_FLOAT => no_vlen(Type::Other)?,
                KIND_FUNC if vlen <= FUNC_LINKAGE_MAX => Type::Other,
                KIND_FUNC => return Err(BtfError::Malformed("unknown function linkage")),
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            types.push(ty);
        }

        let count = types.len();
        let refers_out = |id: u32| id as usize >= count;
        let bad_ref = types.iter().any(|t| match t {
            Type::Modifier { type_id } | Type::Pointer { type_id } => refers_out(*type_id),
            _ => false,
        });
        if bad_ref || members.iter().any(|m| refers_out(m.type_id)) {
            return Err(BtfError::Malformed("type id out of range"));
        }

        let strings = strings.to_vec();
        for index in [&mut structs, &mut typedefs] {
            index.sort_unstable_by(|(a, a_id), (b, b_id)| {
                bytes_of(&strings, *a).cmp(bytes_of(&strings, *b)).then(a_id.cmp(b_id))
            });
        }
        Ok(Self { types, members, strings, structs, typedefs })
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous structs/unions.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id =
            self.lookup(&self.structs, strukt).ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let no_member = || BtfError::NoMember { strukt: strukt.into(), member: member.into() };
        let (bits, bitfield) = self.find(id, member.as_bytes())?.ok_or_else(no_member)?;
        if bitfield != 0 || bits % 8 != 0 {
            return Err(BtfError::Bitfield { strukt: strukt.into(), member: member.into() });
        }
        // Within the struct: `find` checks each anonymous member fits in its parent.
        Ok(bits / 8)
    }

    /// `sizeof(struct strukt)`.
    pub fn struct_size(&self, strukt: &str) -> Result<u32, BtfError> {
        let id =
            self.lookup(&self.structs, strukt).ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        match self.types.get(id as usize) {
            Some(Type::Composite { size, .. }) => Ok(*size),
            _ => Err(BtfError::NoStruct(strukt.into())),
        }
    }

    /// How many arguments tracepoint `event` passes to a tp_btf program: the parameters of
    /// its `btf_trace_<event>` prototype (include/linux/tracepoint.h, `__DECLARE_TRACE`:
    /// `typedef void (*btf_trace_##call)(void *__data, proto)`), less `__data`. This is what
    /// the verifier lets a program read (kernel/bpf/btf.c, `btf_ctx_access()`), so it tells
    /// kernel versions apart by what they do, not by their number.
    pub fn tracepoint_args(&self, event: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::NoTracepoint(event.into());
        let id = self.lookup(&self.typedefs, &format!("btf_trace_{event}")).ok_or_else(missing)?;
        // The typedef names a pointer (through modifiers, if any) ...
        let Type::Pointer { type_id } = self.resolve(id)? else { return Err(missing()) };
        // ... to a function prototype.
        let Type::FuncProto { params } = self.resolve(*type_id)? else { return Err(missing()) };
        params.checked_sub(1).ok_or_else(missing)
    }

    /// The type `name` has in `index`, the one with the lowest id if there are several.
    fn lookup(&self, index: &[(Name, u32)], name: &str) -> Option<u32> {
        let key = name.as_bytes();
        let at = index.partition_point(|(n, _)| bytes_of(&self.strings, *n) < key);
        let (n, id) = index.get(at)?;
        (bytes_of(&self.strings, *n) == key).then_some(*id)
    }

    /// The type `id` is, through typedefs and modifiers; see `resolve_id`.
    fn resolve(&self, id: u32) -> Result<&Type, BtfError> {
        let id = self.resolve_id(id)?;
        self.types.get(id as usize).ok_or(BtfError::Malformed("type id out of range"))
    }

    /// The id of the type `id` is, through typedefs and modifiers. An error for an id out of
    /// range, a cycle, or a chain longer than the kernel itself would follow.
    fn resolve_id(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_RESOLVE_DEPTH {
            match self.types.get(id as usize) {
                Some(Type::Modifier { type_id }) => id = *type_id,
                Some(_) => return Ok(id),
                None => return Err(BtfError::Malformed("type id out of range")),
            }
        }
        Err(BtfError::Malformed("typedef/modifier chain too long or cyclic"))
    }

    /// Where `member` is in composite `id`, as (bit offset, bitfield size): the first member of
    /// that name in declaration order, looking through anonymous members depth-first as C
    /// does. Walks every member held by value however early the name turns up, so a struct
    /// that contains itself, or a member type that does not resolve, is an error whatever is
    /// asked of it (the kernel rejects such BTF: kernel/bpf/btf.c, `btf_struct_resolve()`).
    fn find(&self, id: u32, member: &[u8]) -> Result<Option<(u32, u32)>, BtfError> {
        let mut search = Search { member, path: Vec::new(), done: HashSet::new(), found: None };
        self.walk(id, 0, true, &mut search)?;
        let Some((bits, bitfield)) = search.found else { return Ok(None) };
        let bits =
            u32::try_from(bits).map_err(|_| BtfError::Malformed("member offset overflows"))?;
        Ok(Some((bits, bitfield)))
    }

    /// One step of `find`: composite `id`, at `base` bits into the outermost struct. Its
    /// member names count if `searched`: if it is the outermost struct or reached from it
    /// through anonymous members only.
    fn walk(
        &self,
        id: u32,
        base: u64,
        searched: bool,
        search: &mut Search,
    ) -> Result<(), BtfError> {
        if search.path.contains(&id) {
            return Err(BtfError::Malformed("struct contains itself"));
        }
        if search.path.len() >= MAX_RESOLVE_DEPTH {
            return Err(BtfError::Malformed("structs nested too deeply"));
        }
        // A composite already walked in full holds no earlier match: once is enough, which
        // keeps a hostile DAG of members linear rather than exponential.
        if !search.done.insert((id, searched)) {
            return Ok(());
        }
        let Some(Type::Composite { size, members }) = self.types.get(id as usize) else {
            return Ok(());
        };
        let members = self.members.get(members.start as usize..members.end as usize).unwrap_or(&[]);
        search.path.push(id);
        for m in members {
            let bits = base + u64::from(m.bit_offset);
            let named = m.name.len > 0;
            if named
                && searched
                && search.found.is_none()
                && bytes_of(&self.strings, m.name) == search.member
            {
                search.found = Some((bits, m.bitfield_size));
            }
            let inner_id = self.resolve_id(m.type_id)?;
            let Some(Type::Composite { size: inner, .. }) = self.types.get(inner_id as usize)
            else {
                continue; // a scalar, a pointer, an array, or unnamed padding such as `int :3`
            };
            // As the kernel requires of a struct-typed member (kernel/bpf/btf.c,
            // `btf_struct_check_member()`): byte-aligned, and within its parent.
            if m.bit_offset % 8 != 0
                || u64::from(m.bit_offset / 8) + u64::from(*inner) > u64::from(*size)
            {
                return Err(BtfError::Malformed("struct member misaligned or past its struct"));
            }
            self.walk(inner_id, bits, searched && !named, search)?;
        }
        search.path.pop();
        Ok(())
    }

    /// Every offset the probes need (see `observer_ebpf::KernelOffsets`).
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        Ok(KernelOffsets {
            task_tgid: self.member_offset("task_struct", "tgid")?,
            task_pid: self.member_offset("task_struct", "pid")?,
            task_cgroups: self.member_offset("task_struct", "cgroups")?,
            task_exit_code: self.member_offset("task_struct", "exit_code")?,
            task_comm: self.member_offset("task_struct", "comm")?,
            css_set_dfl_cgrp: self.member_offset("css_set", "dfl_cgrp")?,
            cgroup_kn: self.member_offset("cgroup", "kn")?,
            kernfs_node_id: self.member_offset("kernfs_node", "id")?,
            task_sighand: self.member_offset("task_struct", "sighand")?,
            sighand_action: self.member_offset("sighand_struct", "action")?,
            k_sigaction_size: self.struct_size("k_sigaction")?,
            task_thread_pid: self.member_offset("task_struct", "thread_pid")?,
            pid_level: self.member_offset("pid", "level")?,
            pid_numbers: self.member_offset("pid", "numbers")?,
            upid_size: self.struct_size("upid")?,
            task_real_parent: self.member_offset("task_struct", "real_parent")?,
            task_group_leader: self.member_offset("task_struct", "group_leader")?,
            task_signal: self.member_offset("task_struct", "signal")?,
            signal_live: self.member_offset("signal_struct", "live")?,
            signal_flags: self.member_offset("signal_struct", "flags")?,
            signal_group_exit_code: self.member_offset("signal_struct", "group_exit_code")?,
            task_blocked: self.member_offset("task_struct", "blocked")?,
            task_real_blocked: self.member_offset("task_struct", "real_blocked")?,
            task_start_boottime: self.member_offset("task_struct", "start_boottime")?,
            cgroup_parent_css: self.member_offset("cgroup", "self")?
                + self.member_offset("cgroup_subsys_state", "parent")?,
            cgroup_self: self.member_offset("cgroup", "self")?,
            // The traffic probe's: all of them, or none (zero: it is not loaded, see
            // `traffic_offsets`).
            net: self.traffic_offsets().unwrap_or(NetOffsets::ZERO),
        })
    }
}

impl Btf {
    /// The offsets the traffic probe (`probes/net.rs`) and the namespace reads at exec read,
    /// resolved together; an error names the first missing
    /// (`sk_rx_dst_ifindex` is 5.16's, `net_cookie` set at a namespace's making 5.12's).
    pub fn traffic_offsets(&self) -> Result<NetOffsets, BtfError> {
        let common = self.member_offset("sock", "__sk_common")?;
        Ok(NetOffsets {
            // `possible_net_t` holds the one pointer (include/net/net_namespace.h, with
            // CONFIG_NET_NS, which every container kernel has).
            sock_net: common + self.member_offset("sock_common", "skc_net")?,
            net_cookie: self.member_offset("net", "net_cookie")?,
            task_nsproxy: self.member_offset("task_struct", "nsproxy")?,
            nsproxy_net_ns: self.member_offset("nsproxy", "net_ns")?,
            sock_protocol: self.member_offset("sock", "sk_protocol")?,
            sock_rx_ifindex: self.member_offset("sock", "sk_rx_dst_ifindex")?,
            skc_family: common + self.member_offset("sock_common", "skc_family")?,
            inet_sport: self.member_offset("inet_sock", "inet_sport")?,
            skc_daddr: common + self.member_offset("sock_common", "skc_daddr")?,
            skc_v6_daddr: common + self.member_offset("sock_common", "skc_v6_daddr")?,
        })
    }
}

/// The traffic offsets of `o` zeroed: the probe is not loaded, and the exec probe's namespace
/// reads (which test `net_cookie`) are off.
pub fn without_traffic(o: KernelOffsets) -> KernelOffsets {
    KernelOffsets { net: NetOffsets::ZERO, ..o }
}

/// The state of one `Btf::find`.
struct Search<'a> {
    member: &'a [u8],
    /// The composites being walked, outermost first: one seen again is a cycle.
    path: Vec<u32>,
    /// The composites walked (or being walked), and whether their names counted.
    done: HashSet<(u32, bool)>,
    /// The first match: bit offset from the outermost struct, bitfield size.
    found: Option<(u64, u32)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
        sync::OnceLock,
    };

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Btf::parse(b""), Err(BtfError::Malformed(_))));
        assert!(matches!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24]), Err(BtfError::Malformed(_))));
        let mut hdr = vec![0x9f, 0xeb, 1, 0];
        hdr.extend_from_slice(&24u32.to_le_bytes());
        hdr.extend_from_slice(&[0xff; 16]);
        assert!(Btf::parse(&hdr).is_err());
    }

    /// The running kernel's own BTF: every offset the probes need resolves, and the ones that
    /// have been stable for years have their well-known relative order.
    #[test]
    fn resolves_kernel_offsets_from_vmlinux() {
        let btf = Btf::from_sys_fs().expect("this kernel publishes BTF at /sys/kernel/btf/vmlinux");
        let o = btf.kernel_offsets().expect("all offsets resolve");
        assert!(o.task_pid > 0 && o.task_tgid == o.task_pid + 4, "{o:?}");
        assert!(o.task_comm > o.task_tgid, "{o:?}");
        assert_eq!(o.kernfs_node_id % 8, 0);
        // struct k_sigaction { struct sigaction sa; } on x86_64: handler, flags, restorer, mask.
        assert_eq!(o.k_sigaction_size, 32, "{o:?}");
        // struct upid { int nr; struct pid_namespace *ns; }
        assert_eq!(o.upid_size, 16, "{o:?}");
        assert!(btf.member_offset("task_struct", "no_such_field").is_err());
        assert!(matches!(btf.member_offset("no_such_struct", "x"), Err(BtfError::NoStruct(_))));
        assert_eq!(btf.struct_size("k_sigaction").unwrap(), o.k_sigaction_size);
        // struct signal_struct { refcount_t sigcnt; atomic_t live; ... }
        assert_eq!(o.signal_live, 4, "{o:?}");
        // The traffic probe's, on 6.18: skc_net at 48 in every kernel since 4.x, the peer's
        // address first in sock_common, the local port past struct sock (in inet_sock).
        let n = btf.traffic_offsets().expect("a 5.16+ kernel has them all");
        assert_eq!((o.net, n.sock_net, n.skc_daddr), (n, 48, 0), "{n:?}");
        assert!(n.inet_sport > btf.struct_size("sock").unwrap(), "{n:?}");
        assert_eq!(super::without_traffic(o).net, NetOffsets::ZERO);
        assert!(o.task_signal > 0 && o.task_group_leader > 0 && o.signal_flags > 0, "{o:?}");
    }

    /// The prototypes every tp_btf program of ours attaches to, as this kernel declares them.
    #[test]
    fn reads_tracepoint_prototypes_from_vmlinux() {
        let btf = Btf::from_sys_fs().expect("kernel BTF");
        assert_eq!(btf.tracepoint_args("signal_generate").unwrap(), 5);
        assert_eq!(btf.tracepoint_args("signal_deliver").unwrap(), 3);
        assert_eq!(btf.tracepoint_args("sched_process_exec").unwrap(), 3);
        // (task) before 6.16, (task, group_dead) since.
        assert!(matches!(btf.tracepoint_args("sched_process_exit"), Ok(1 | 2)));
        assert!(matches!(btf.tracepoint_args("no_such_event"), Err(BtfError::NoTracepoint(_))));
    }

    /// A hand-made BTF blob: `typedef void (*btf_trace_ev)(void *, int[, int])`.
    fn blob_with_tracepoint(params: u32) -> Vec<u8> {
        let strings = b"\0int\0btf_trace_ev\0".to_vec();
        let mut types = Vec::new();
        fn ty(types: &mut Vec<u8>, name: u32, kind: u32, vlen: u32, size_or_type: u32) {
            types.extend_from_slice(&name.to_le_bytes());
            types.extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
            types.extend_from_slice(&size_or_type.to_le_bytes());
        }
        ty(&mut types, 1, 1, 0, 4); // [1] int, size 4
        types.extend_from_slice(&((1u32 << 24) | 32).to_le_bytes()); // signed, 32 bits
        ty(&mut types, 0, KIND_PTR, 0, 0); // [2] void *
        ty(&mut types, 0, KIND_FUNC_PROTO, params, 0); // [3] void (void *, int...)
        for i in 0..params {
            types.extend_from_slice(&0u32.to_le_bytes());
            types.extend_from_slice(&(if i == 0 { 2u32 } else { 1 }).to_le_bytes());
        }
        ty(&mut types, 0, KIND_PTR, 0, 3); // [4] pointer to [3]
        ty(&mut types, 5, KIND_TYPEDEF, 0, 4); // [5] typedef btf_trace_ev
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        blob.extend_from_slice(&24u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&(types.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(types.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        blob.extend(types);
        blob.extend(strings);
        blob
    }

    #[test]
    fn counts_tracepoint_arguments_without_the_data_pointer() {
        for params in 1..=3 {
            let btf = Btf::parse(&blob_with_tracepoint(params)).expect("well-formed blob");
            assert_eq!(btf.tracepoint_args("ev").unwrap(), params - 1);
        }
        let btf = Btf::parse(&blob_with_tracepoint(0)).unwrap();
        assert!(matches!(btf.tracepoint_args("ev"), Err(BtfError::NoTracepoint(_))));
    }

    // ---- A BTF writer for the tests, and a small blob with every kind in it ----

    /// Writes little-endian BTF: a 24-byte header, the type section, the string section.
    /// Remembers where each type record and each member record starts, for targeted damage.
    #[derive(Clone)]
    struct Writer {
        types: Vec<u8>,
        strings: Vec<u8>,
        /// Byte offset in `types` of type `id`'s record, at index `id - 1`.
        records: Vec<usize>,
        /// Byte offset in `types` of every struct/union member record.
        members: Vec<usize>,
    }

    /// `(name, type id, bit offset, bitfield size)`; the size needs a `kind_flag` composite.
    type M<'a> = (&'a str, u32, u32, u32);

    impl Writer {
        fn new() -> Self {
            Self { types: Vec::new(), strings: vec![0], records: Vec::new(), members: Vec::new() }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn words(&mut self, words: &[u32]) {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }

        /// A type record without its trailing data; returns its id.
        fn ty(&mut self, name: &str, kind: u32, flag: bool, vlen: u32, size_or_type: u32) -> u32 {
            let name = self.str(name);
            self.records.push(self.types.len());
            self.words(&[name, (u32::from(flag) << 31) | (kind << 24) | vlen, size_or_type]);
            self.records.len() as u32
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.ty(name, KIND_INT, false, 0, size);
            self.words(&[(1 << 24) | (size * 8)]); // BTF_INT_SIGNED, nr_bits
            id
        }

        fn composite(&mut self, kind: u32, name: &str, size: u32, flag: bool, ms: &[M]) -> u32 {
            let id = self.ty(name, kind, flag, ms.len() as u32, size);
            for &(name, type_id, bits, bitfield) in ms {
                let name = self.str(name);
                self.members.push(self.types.len());
                self.words(&[name, type_id, if flag { (bitfield << 24) | bits } else { bits }]);
            }
            id
        }

        fn func_proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let id = self.ty("", KIND_FUNC_PROTO, false, params.len() as u32, ret);
            for &p in params {
                self.words(&[0, p]);
            }
            id
        }

        fn blob(&self) -> Vec<u8> {
            blob_of(&self.types, &self.strings)
        }
    }

    /// A header that fits `types` then `strings`, and both sections.
    fn blob_of(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        for w in [24, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(types);
        blob.extend_from_slice(strings);
        blob
    }

    /// Where the type section starts in a blob from `Writer::blob`.
    const TYPES_AT: usize = 24;

    /// Every kind of the format (Documentation/bpf/btf.rst, 2.2), in a few shapes the parser
    /// must get right:
    ///
    /// ```c
    /// struct task {                       // kind_flag set: member offsets carry bitfield sizes
    ///     int pid;                        // 0
    ///     union { int a; int b; };        // 4
    ///     struct { int c; int d; };       // 8, 12
    ///     int bits:3, flag2:5;            // bitfields at bit 128, 131
    ///     s32 tgid;                       // 20, typedef const int
    ///     struct task *next;              // 24
    /// };                                  // 32 bytes
    /// struct upid { int nr; struct task *ns; };
    /// typedef void (*btf_trace_ev)(struct task *, int, int);
    /// typedef volatile struct task task_t;
    /// union named_u { int x; };
    /// ```
    fn sample() -> Writer {
        let mut w = Writer::new();
        let int = w.int("int", 4); // [1]
        let anon_u = w.composite(KIND_UNION, "", 4, false, &[("a", int, 0, 0), ("b", int, 0, 0)]);
        let anon_s = w.composite(KIND_STRUCT, "", 8, false, &[("c", int, 0, 0), ("d", int, 32, 0)]);
        let (task, cnst, s32, ptr) = (4, 5, 6, 7);
        let t = w.composite(
            KIND_STRUCT,
            "task",
            32,
            true,
            &[
                ("pid", int, 0, 0),
                ("", anon_u, 32, 0),
                ("", anon_s, 64, 0),
                ("bits", int, 128, 3),
                ("flag2", int, 131, 5),
                ("tgid", s32, 160, 0),
                ("next", ptr, 192, 0),
            ],
        );
        assert_eq!(t, task);
        assert_eq!(w.ty("", KIND_CONST, false, 0, int), cnst);
        assert_eq!(w.ty("s32", KIND_TYPEDEF, false, 0, cnst), s32);
        assert_eq!(w.ty("", KIND_PTR, false, 0, task), ptr);
        w.composite(KIND_STRUCT, "upid", 16, false, &[("nr", int, 0, 0), ("ns", ptr, 64, 0)]); // [8]
        let proto = w.func_proto(0, &[ptr, int, int]); // [9]
        let fptr = w.ty("", KIND_PTR, false, 0, proto); // [10]
        w.ty("btf_trace_ev", KIND_TYPEDEF, false, 0, fptr); // [11]
        w.ty("e", KIND_ENUM, false, 2, 4); // [12]
        let (zero, one) = (w.str("ZERO"), w.str("ONE"));
        w.words(&[zero, 0, one, 1]);
        w.ty("", KIND_ARRAY, false, 0, 0); // [13] int[4]
        w.words(&[int, int, 4]);
        w.ty("fwd", KIND_FWD, false, 0, 0); // [14]
        w.ty("f", KIND_FUNC, false, 1, proto); // [15] vlen: BTF_FUNC_GLOBAL
        let var = w.ty("v", KIND_VAR, false, 0, int); // [16]
        w.words(&[1]); // BTF_VAR_GLOBAL_ALLOCATED
        w.ty(".data", KIND_DATASEC, false, 1, 4); // [17]
        w.words(&[var, 0, 4]);
        w.ty("float", KIND_FLOAT, false, 0, 8); // [18]
        w.ty("tag", KIND_DECL_TAG, false, 0, task); // [19]
        w.words(&[u32::MAX]); // component_idx -1: the struct itself
        w.ty("user", KIND_TYPE_TAG, false, 0, int); // [20]
        w.ty("e64", KIND_ENUM64, false, 1, 8); // [21]
        let big = w.str("BIG");
        w.words(&[big, 0, 1]);
        let vol = w.ty("", KIND_VOLATILE, false, 0, task); // [22]
        w.ty("", KIND_RESTRICT, false, 0, ptr); // [23]
        w.ty("task_t", KIND_TYPEDEF, false, 0, vol); // [24]
        w.composite(KIND_UNION, "named_u", 4, false, &[("x", int, 0, 0)]); // [25]
        w
    }

    /// The names the checks below ask about: all of the sample's, some of vmlinux's.
    const STRUCTS: &[&str] = &["task", "upid", "named_u", "task_t", "e", "fwd", "", "list_head"];
    const MEMBERS: &[&str] =
        &["pid", "a", "b", "c", "d", "bits", "flag2", "tgid", "next", "nr", "ns", "x", "", "zzz"];

    #[test]
    fn reads_the_sample() {
        let btf = Btf::parse(&sample().blob()).expect("well-formed blob");
        let off = |s, m| btf.member_offset(s, m);
        assert_eq!(off("task", "pid").unwrap(), 0);
        assert_eq!(off("task", "a").unwrap(), 4);
        assert_eq!(off("task", "b").unwrap(), 4);
        assert_eq!(off("task", "c").unwrap(), 8);
        assert_eq!(off("task", "d").unwrap(), 12);
        assert!(matches!(off("task", "bits"), Err(BtfError::Bitfield { .. })));
        assert!(matches!(off("task", "flag2"), Err(BtfError::Bitfield { .. })));
        assert_eq!(off("task", "tgid").unwrap(), 20);
        assert_eq!(off("task", "next").unwrap(), 24);
        assert!(matches!(off("task", "zzz"), Err(BtfError::NoMember { .. })));
        assert_eq!(off("upid", "ns").unwrap(), 8);
        assert_eq!(btf.struct_size("task").unwrap(), 32);
        assert_eq!(btf.struct_size("upid").unwrap(), 16);
        // Unions, typedefs and other kinds are not structs.
        for s in ["named_u", "task_t", "e", "fwd", "", "int"] {
            assert!(matches!(btf.struct_size(s), Err(BtfError::NoStruct(_))), "{s}");
        }
        assert_eq!(btf.tracepoint_args("ev").unwrap(), 2);
        assert!(matches!(btf.kernel_offsets(), Err(BtfError::NoStruct(_))));
    }

    // ---- Damage ----

    /// One way to damage a blob. Positions are taken modulo what they index, so every value
    /// lands somewhere.
    #[derive(Debug, Clone)]
    enum Damage {
        FlipBit(usize),
        /// Overwrite the 4-aligned word at this index.
        SetWord(usize, u32),
        Truncate(usize),
        /// Set a type record's vlen (its low 16 info bits).
        SetVlen(usize, u32),
        /// Set a type record's kind (info bits 24-28).
        SetKind(usize, u32),
        /// Set a type record's `size`/`type` word: for modifiers and pointers, what it refers to.
        SetRef(usize, u32),
        SetMemberType(usize, u32),
        SetMemberOffset(usize, u32),
        /// Set a type record's or a member's name offset.
        SetName(usize, u32),
        Append(Vec<u8>),
    }

    /// Values that sit on the edges: small type ids (the sample has 25 types, so these include
    /// each type's own id), vlen and offset limits, sign and overflow boundaries.
    fn edgy() -> impl Strategy<Value = u32> {
        prop_oneof![
            4 => 0u32..32,
            1 => Just(0xffff),
            1 => Just(0x1_0000),
            1 => Just(0x00ff_ffff),
            1 => Just(0x8000_0000),
            1 => Just(u32::MAX),
            1 => Just(u32::MAX - 7),
            1 => Just(u32::MAX / 8),
            2 => any::<u32>(),
        ]
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            3 => any::<usize>().prop_map(Damage::FlipBit),
            2 => (any::<usize>(), edgy()).prop_map(|(i, v)| Damage::SetWord(i, v)),
            1 => any::<usize>().prop_map(Damage::Truncate),
            2 => (any::<usize>(), edgy()).prop_map(|(i, v)| Damage::SetVlen(i, v)),
            1 => (any::<usize>(), 0u32..32).prop_map(|(i, v)| Damage::SetKind(i, v)),
            2 => (any::<usize>(), edgy()).prop_map(|(i, v)| Damage::SetRef(i, v)),
            2 => (any::<usize>(), edgy()).prop_map(|(i, v)| Damage::SetMemberType(i, v)),
            1 => (any::<usize>(), edgy()).prop_map(|(i, v)| Damage::SetMemberOffset(i, v)),
            1 => (any::<usize>(), edgy()).prop_map(|(i, v)| Damage::SetName(i, v)),
            1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Append),
        ]
    }

    fn set_u32(blob: &mut [u8], at: usize, f: impl FnOnce(u32) -> u32) {
        if let Some(b) = blob.get_mut(at..at + 4) {
            let v = f(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Applies `damage` to `blob`, whose records (type section offsets) `w` knows.
    fn apply(w: &Writer, mut blob: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
        let record = |i: usize| TYPES_AT + w.records[i % w.records.len()];
        let member = |i: usize| TYPES_AT + w.members[i % w.members.len()];
        for d in damage {
            let len = blob.len();
            match d {
                Damage::FlipBit(i) if len > 0 => blob[i / 8 % len] ^= 1 << (i % 8),
                Damage::SetWord(i, v) if len >= 4 => set_u32(&mut blob, i % (len / 4) * 4, |_| *v),
                Damage::Truncate(n) => blob.truncate(n % (len + 1)),
                Damage::SetVlen(i, v) => {
                    set_u32(&mut blob, record(*i) + 4, |info| (info & !0xffff) | (v & 0xffff))
                }
                Damage::SetKind(i, k) => {
                    set_u32(&mut blob, record(*i) + 4, |info| (info & !(0x1f << 24)) | (k << 24))
                }
                Damage::SetRef(i, v) => set_u32(&mut blob, record(*i) + 8, |_| *v),
                Damage::SetMemberType(i, v) => set_u32(&mut blob, member(*i) + 4, |_| *v),
                Damage::SetMemberOffset(i, v) => set_u32(&mut blob, member(*i) + 8, |_| *v),
                Damage::SetName(i, v) if i % 2 == 0 => set_u32(&mut blob, record(i / 2), |_| *v),
                Damage::SetName(i, v) => set_u32(&mut blob, member(i / 2), |_| *v),
                Damage::Append(bytes) => blob.extend_from_slice(bytes),
                _ => {}
            }
        }
        blob
    }

    // ---- Bounds on what a parse may cost ----

    /// Counts the bytes each thread has allocated and not freed, and the peak since
    /// `measure` started, so the properties can bound what a hostile blob makes us allocate.
    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn count(delta: isize) {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + delta);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
    }

    // SAFETY: forwards every call to `System` unchanged; it only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is `System`'s.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as above.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as above.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Runs `f`, returning what it returned and the most bytes it had allocated at once.
    fn peak_bytes<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let r = f();
        (r, (PEAK.with(Cell::get) - base).max(0) as usize)
    }

    /// What a parse of `len` input bytes, and the queries after it, may allocate at most: a
    /// small multiple of the input (the parsed types are a few words per 12-byte record).
    fn allowance(len: usize) -> usize {
        16 * len + 64 * 1024
    }

    /// Parses `blob` and asks every question, checking what must hold of any answer: no panic,
    /// bounded memory, and answers that are consistent with each other.
    fn parse_and_query(blob: &[u8]) -> Result<(), TestCaseError> {
        let (parsed, peak) = peak_bytes(|| {
            let btf = Btf::parse(blob).ok()?;
            let mut answers = Vec::new();
            for s in STRUCTS {
                for m in MEMBERS {
                    answers.push((s, m, btf.member_offset(s, m), btf.struct_size(s)));
                }
            }
            let args = ["ev", "", "sched_process_exit"].map(|e| btf.tracepoint_args(e));
            let _ = btf.kernel_offsets();
            Some((answers, args))
        });
        prop_assert!(peak <= allowance(blob.len()), "{peak} bytes for {} of input", blob.len());
        let Some((answers, args)) = parsed else { return Ok(()) };
        for (s, m, offset, size) in answers {
            if let Ok(offset) = offset {
                let size = size.map_err(|e| TestCaseError::fail(format!("{s}.{m}: {e}")))?;
                prop_assert!(offset <= size, "{s}.{m} at {offset} of {size} bytes");
                prop_assert!(!m.is_empty(), "an anonymous member has no name to ask for");
            }
        }
        for n in args.into_iter().flatten() {
            prop_assert!(n < 0xffff, "{n} arguments: more than a vlen holds");
        }
        Ok(())
    }

    /// The first 32 KiB of this kernel's type section and 32 KiB of its strings, with a header
    /// that fits: real records of every kind vmlinux uses, cheap enough to damage per case.
    fn vmlinux_prefix() -> Option<&'static [u8]> {
        static PREFIX: OnceLock<Option<Vec<u8>>> = OnceLock::new();
        PREFIX
            .get_or_init(|| {
                let data = std::fs::read(VMLINUX_BTF).ok()?;
                let word = |i: usize| -> Option<usize> {
                    Some(u32::from_le_bytes(data.get(i..i + 4)?.try_into().ok()?) as usize)
                };
                let (hdr, type_off, type_len) = (word(4)?, word(8)?, word(12)?);
                let (str_off, str_len) = (word(16)?, word(20)?);
                let types = data.get(hdr + type_off..hdr + type_off + type_len.min(32 << 10))?;
                let strs = data.get(hdr + str_off..hdr + str_off + str_len.min(32 << 10))?;
                let strs = &strs[..=strs.iter().rposition(|&b| b == 0)?];
                Some(blob_of(types, strs))
            })
            .as_deref()
    }

    /// A type section of words that are often plausible: small ids and offsets, and infos of
    /// every kind with small vlens, so arbitrary input gets past the header and into the walk.
    fn plausible_word() -> impl Strategy<Value = u32> {
        prop_oneof![
            2 => 0u32..40,
            2 => (0u32..24, 0u32..4, any::<bool>())
                .prop_map(|(kind, vlen, flag)| (u32::from(flag) << 31) | (kind << 24) | vlen),
            1 => edgy(),
        ]
    }

    // ---- Regressions: each a defect of the parser before it was fuzzed ----

    /// The sample, parsed; or why not.
    fn parse(w: &Writer) -> Result<Btf, BtfError> {
        Btf::parse(&w.blob())
    }

    /// Found by `never_panic_on_damaged_sample`: `member_offset(s, "")` answered with the
    /// offset of the first anonymous member.
    #[test]
    fn an_empty_member_name_matches_nothing() {
        let btf = parse(&sample()).unwrap();
        assert!(matches!(btf.member_offset("task", ""), Err(BtfError::NoMember { .. })));
    }

    /// Found by `never_panic_on_damaged_sample`: a member past the end of its struct was an
    /// answer (task.c at 40 of 32 bytes), and an anonymous member's offset plus a nested one
    /// could wrap around u32.
    #[test]
    fn rejects_members_past_the_end_of_their_struct() {
        let mut w = Writer::new();
        let int = w.int("int", 4);
        w.composite(KIND_STRUCT, "s", 4, false, &[("x", int, 64, 0)]);
        assert!(matches!(parse(&w), Err(BtfError::Malformed(_))));

        // An anonymous struct that starts inside its parent but does not fit in it.
        let mut w = Writer::new();
        let int = w.int("int", 4);
        let anon = w.composite(KIND_STRUCT, "", 8, false, &[("c", int, 0, 0), ("d", int, 32, 0)]);
        w.composite(KIND_STRUCT, "s", 8, false, &[("", anon, 32, 0)]);
        let btf = parse(&w).unwrap();
        assert!(matches!(btf.member_offset("s", "d"), Err(BtfError::Malformed(_))));

        // Offsets that would wrap u32 when added: 0xffff_fff8 bits plus 32.
        let mut w = Writer::new();
        let int = w.int("int", 4);
        let anon = w.composite(KIND_STRUCT, "", 8, false, &[("d", int, 32, 0)]);
        w.composite(KIND_STRUCT, "s", 0x2000_0000, false, &[("", anon, 0xffff_fff8, 0)]);
        let btf = parse(&w).unwrap();
        assert!(matches!(btf.member_offset("s", "d"), Err(BtfError::Malformed(_))));
    }

    /// Found by `never_panic_on_arbitrary_sections` and `never_panic_on_damaged_vmlinux_prefix`
    /// (66 KB allocated for 86 bytes of input; 1.1 MB for 64 KiB): `Vec::with_capacity(vlen)`
    /// before the members were known to be there. Now a vlen is bounds-checked first.
    #[test]
    fn a_hostile_vlen_allocates_nothing() {
        for kind in [KIND_STRUCT, KIND_UNION, KIND_FUNC_PROTO, KIND_ENUM, KIND_DATASEC] {
            let mut w = Writer::new();
            w.ty("s", kind, true, 0xffff, 4);
            let blob = w.blob();
            let (parsed, peak) = peak_bytes(|| Btf::parse(&blob).map(|_| ()));
            assert!(matches!(parsed, Err(BtfError::Malformed(_))), "kind {kind}");
            assert!(peak < 4096, "kind {kind}: {peak} bytes for {} of input", blob.len());
        }
    }

    /// Found by `never_panic_on_damaged_sample`, which hung: a struct whose anonymous members
    /// lead back to it, or to a type reached many ways, was searched once per path, up to 16
    /// deep: exponential. Now each composite is walked once per query.
    #[test]
    fn a_wide_dag_of_anonymous_members_is_searched_once() {
        let mut w = Writer::new();
        let int = w.int("int", 4);
        // 30 levels of unions, each with 64 anonymous members of the next: 64^30 paths.
        let mut inner = w.composite(KIND_UNION, "", 4, false, &[("leaf", int, 0, 0)]);
        for _ in 0..30 {
            let ms: Vec<M> = (0..64).map(|_| ("", inner, 0, 0)).collect();
            inner = w.composite(KIND_UNION, "", 4, false, &ms);
        }
        w.composite(KIND_STRUCT, "s", 4, false, &[("", inner, 0, 0)]);
        let btf = parse(&w).unwrap();
        assert_eq!(btf.member_offset("s", "leaf").unwrap(), 0);
        assert!(matches!(btf.member_offset("s", "none"), Err(BtfError::NoMember { .. })));
    }

    /// A member list or a prototype that runs off the end of the type section was read from
    /// whatever followed it (the string section), and a trailing partial record was ignored.
    #[test]
    fn rejects_a_type_section_that_ends_inside_a_type() {
        let mut w = Writer::new();
        w.int("int", 4);
        w.ty("s", KIND_STRUCT, false, 1, 4); // one member announced, none there
                                             // The names after it would have read as a member `int x` at offset 0.
        let blob = blob_of(&w.types, b"\0int\0s\0\x05\0\0\0\x01\0\0\0\0\0\0\0\0");
        assert!(matches!(Btf::parse(&blob), Err(BtfError::Malformed(_))));

        let mut w = sample();
        w.types.extend_from_slice(&[0; 8]);
        assert!(matches!(parse(&w), Err(BtfError::Malformed(_))));
    }

    /// A member's name offset outside the string section read as an empty name, so the member
    /// was taken for an anonymous one and searched.
    #[test]
    fn rejects_names_out_of_bounds_or_unterminated() {
        let mut w = Writer::new();
        let int = w.int("int", 4);
        let anon = w.composite(KIND_UNION, "", 4, false, &[("x", int, 0, 0)]);
        w.composite(KIND_STRUCT, "s", 4, false, &[("named", anon, 0, 0)]);
        let at = TYPES_AT + *w.members.last().unwrap();
        let mut blob = w.blob();
        set_u32(&mut blob, at, |_| 0x10_0000);
        assert!(matches!(Btf::parse(&blob), Err(BtfError::Malformed(_))));

        let long = "n".repeat(KSYM_NAME_LEN);
        let mut w = Writer::new();
        w.int(&long, 4);
        assert!(matches!(parse(&w), Err(BtfError::Malformed(_))));
        let mut w = Writer::new();
        w.int(&long[1..], 4); // 511 bytes and its NUL: the longest the kernel allows
        assert!(parse(&w).is_ok());
    }

    /// Every struct and member name was copied into its own `String`: a blob of long names
    /// shared by many records made the parse allocate hundreds of times its size.
    #[test]
    fn names_are_not_copied_per_use() {
        let mut w = Writer::new();
        let int = w.int("int", 4);
        let long = w.str(&"n".repeat(KSYM_NAME_LEN - 1));
        for i in 0..400 {
            // A struct named by a suffix of the long name, each different.
            w.records.push(w.types.len());
            w.words(&[long + i, (KIND_STRUCT << 24) | 1, 4, long, int, 0]);
        }
        let blob = w.blob();
        let (parsed, peak) = peak_bytes(|| Btf::parse(&blob).map(|_| ()));
        parsed.unwrap();
        assert!(peak <= 8 * blob.len(), "{peak} bytes for {} of input", blob.len());
    }

    /// Cycles answered as if the name were missing (`NoMember`, `NoTracepoint`) or, for a
    /// named member whose type is a cycle, with an offset; each is now an error.
    #[test]
    fn cycles_are_errors_not_answers() {
        let malformed = |r: Result<u32, BtfError>| matches!(r, Err(BtfError::Malformed(_)));
        let damaged = |d: Damage| Btf::parse(&apply(&sample(), sample().blob(), &[d])).unwrap();
        // typedef s32 -> itself; and s32 -> const -> s32.
        for (record, to) in [(5, 6), (4, 6)] {
            let btf = damaged(Damage::SetRef(record, to));
            assert!(malformed(btf.member_offset("task", "tgid")), "{record} -> {to}");
            assert_eq!(btf.member_offset("task", "pid").unwrap_or(0), 0);
        }
        // The anonymous union in `task` is `task` itself; the union's (named) first member is
        // a `task`, by value.
        for (member, to) in [(5, 4), (0, 4)] {
            let btf = damaged(Damage::SetMemberType(member, to));
            for m in ["pid", "a", "tgid", "zzz"] {
                assert!(malformed(btf.member_offset("task", m)), "member {member} -> {to}: {m}");
            }
        }
        // typedef btf_trace_ev -> itself.
        let btf = damaged(Damage::SetRef(10, 11));
        assert!(malformed(btf.tracepoint_args("ev")));
        // Its pointer -> the typedef: a cycle through a pointer, which is no prototype.
        let btf = damaged(Damage::SetRef(9, 11));
        assert!(matches!(btf.tracepoint_args("ev"), Err(BtfError::NoTracepoint(_))));
    }

    /// A pointer to a pointer to a prototype was counted as a prototype.
    #[test]
    fn a_pointer_to_a_pointer_is_no_prototype() {
        let mut w = Writer::new();
        let int = w.int("int", 4);
        let proto = w.func_proto(0, &[int, int]);
        let ptr = w.ty("", KIND_PTR, false, 0, proto);
        let ptr2 = w.ty("", KIND_PTR, false, 0, ptr);
        w.ty("btf_trace_ev", KIND_TYPEDEF, false, 0, ptr2);
        w.ty("btf_trace_ok", KIND_TYPEDEF, false, 0, ptr);
        let btf = parse(&w).unwrap();
        assert!(matches!(btf.tracepoint_args("ev"), Err(BtfError::NoTracepoint(_))));
        assert_eq!(btf.tracepoint_args("ok").unwrap(), 1);
    }

    /// A type id past the last type made `find` skip the member, or was not looked at at all.
    #[test]
    fn rejects_type_ids_out_of_range() {
        let count = sample().records.len() as u32;
        for d in [Damage::SetMemberType(0, count + 1), Damage::SetRef(4, count + 1)] {
            let blob = apply(&sample(), sample().blob(), std::slice::from_ref(&d));
            assert!(matches!(Btf::parse(&blob), Err(BtfError::Malformed(_))), "{d:?}");
        }
        // The last id is in range.
        let blob = apply(&sample(), sample().blob(), &[Damage::SetMemberType(0, count)]);
        assert!(Btf::parse(&blob).is_ok());
    }

    /// A `hdr_len` under 24 made the header's own fields parse as types; the version, the
    /// string section's framing and overlapping sections were not checked.
    #[test]
    fn rejects_a_bad_header() {
        let good = sample().blob();
        assert!(Btf::parse(&good).is_ok());
        let with = |at: usize, v: u32| {
            let mut blob = good.clone();
            set_u32(&mut blob, at, |_| v);
            Btf::parse(&blob)
        };
        assert!(matches!(with(4, 0), Err(BtfError::Malformed(_))), "hdr_len 0");
        assert!(matches!(with(4, 23), Err(BtfError::Malformed(_))), "hdr_len 23");
        assert!(matches!(with(0, 0x0002_eb9f), Err(BtfError::Malformed(_))), "version 2");
        assert!(matches!(with(16, 0), Err(BtfError::Malformed(_))), "strings over types");
        assert!(matches!(with(20, 0), Err(BtfError::Malformed(_))), "no string section");
        for at in [8, 12, 16, 20] {
            assert!(matches!(with(at, u32::MAX), Err(BtfError::Malformed(_))), "word {at}");
        }
        let mut unterminated = good.clone();
        *unterminated.last_mut().unwrap() = b'x';
        assert!(matches!(Btf::parse(&unterminated), Err(BtfError::Malformed(_))));
        // Bits of info outside vlen, kind and kind_flag; a vlen where the kind has none.
        let mut w = sample();
        w.words(&[0, (KIND_INT << 24) | (1 << 16), 4, 32]);
        assert!(matches!(parse(&w), Err(BtfError::Malformed(_))));
        let mut w = sample();
        w.words(&[0, (KIND_PTR << 24) | 1, 1]);
        assert!(matches!(parse(&w), Err(BtfError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            parse_and_query(&bytes)?;
            let mut with_magic = vec![0x9f, 0xeb, 1, 0];
            with_magic.extend_from_slice(&bytes);
            parse_and_query(&with_magic)?;
        }

        #[test]
        fn never_panic_on_arbitrary_sections(
            words in prop::collection::vec(plausible_word(), 0..48),
            names in "[a-z\\x00]{0,32}",
        ) {
            let types: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let strings = format!("\0task\0pid\0a\0btf_trace_ev\0{names}\0");
            parse_and_query(&blob_of(&types, strings.as_bytes()))?;
        }

        #[test]
        fn never_panic_on_damaged_sample(damage in prop::collection::vec(damage(), 1..6)) {
            let w = sample();
            parse_and_query(&apply(&w, w.blob(), &damage))?;
        }

        #[test]
        fn never_panic_on_damaged_vmlinux_prefix(
            flips in prop::collection::vec((any::<usize>(), edgy()), 0..4),
            truncate in prop::option::of(any::<usize>()),
        ) {
            let Some(prefix) = vmlinux_prefix() else { return Ok(()) };
            let mut blob = prefix.to_vec();
            for (i, v) in flips {
                let at = i % (blob.len() / 4) * 4;
                if v < 32 { blob[at + (v as usize) / 8] ^= 1 << (v % 8) } else { set_u32(&mut blob, at, |_| v) }
            }
            if let Some(n) = truncate {
                blob.truncate(n % (blob.len() + 1));
            }
            parse_and_query(&blob)?;
        }
    }
}
