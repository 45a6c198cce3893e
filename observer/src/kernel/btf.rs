//! Struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).
//!
//! aya cannot emit CO-RE relocations from Rust, so the probes read kernel structs at offsets
//! computed here at load time and passed in `Config::offsets`. The parser reads just enough of
//! the BTF format (Documentation/bpf/btf.rst) to walk struct and union members, descending into
//! anonymous members the way C field lookup does.

use std::{collections::HashMap, path::Path};

use observer_ebpf::KernelOffsets;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("BTF member {strukt}.{member} is a bitfield")]
    Bitfield { strukt: String, member: String },
    #[error("BTF has no prototype for tracepoint {0} (no typedef btf_trace_{0})")]
    NoTracepoint(String),
}

const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;

/// One struct/union member: name (empty when anonymous), type id, bit offset, bitfield size.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        size: u32,
        members: Vec<Member>,
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
    structs: HashMap<String, u32>,
    typedefs: HashMap<String, u32>,
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path)
            .map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at =
            |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if u16_at(0) != Some(0xeb9f) {
            return Err(BtfError::Malformed("bad magic (big-endian BTF is not supported)"));
        }
        let hdr = |i: usize| u32_at(i).ok_or(BtfError::Malformed("short header"));
        let hdr_len = hdr(4)? as usize;
        let (type_off, type_len) = (hdr(8)? as usize, hdr(12)? as usize);
        let (str_off, str_len) = (hdr(16)? as usize, hdr(20)? as usize);
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strs_start = hdr_len + str_off;
        let strs = data
            .get(strs_start..strs_start + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?;
        let name = |off: u32| -> String {
            let s = strs.get(off as usize..).unwrap_or(&[]);
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        if types_end > data.len() {
            return Err(BtfError::Malformed("type section out of bounds"));
        }

        let mut types = vec![Type::Other]; // id 0: void
        let mut structs = HashMap::new();
        let mut typedefs = HashMap::new();
        let mut off = types_start;
        while off + 12 <= types_end {
            let name_off = u32_at(off).ok_or(BtfError::Malformed("short type"))?;
            let info = u32_at(off + 4).ok_or(BtfError::Malformed("short type"))?;
            let size_or_type = u32_at(off + 8).ok_or(BtfError::Malformed("short type"))?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let id = types.len() as u32;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let (Some(mname), Some(mtype), Some(moff)) =
                            (u32_at(m), u32_at(m + 4), u32_at(m + 8))
                        else {
                            return Err(BtfError::Malformed("short member"));
                        };
                        let (bit_offset, bitfield_size) =
                            if kind_flag { (moff & 0xff_ffff, moff >> 24) } else { (moff, 0) };
                        members.push(Member {
                            name: name(mname),
                            type_id: mtype,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    off += vlen * 12;
                    let n = name(name_off);
                    if !n.is_empty() && kind == KIND_STRUCT && size_or_type > 0 {
                        structs.entry(n).or_insert(id);
                    }
                    Type::Composite { size: size_or_type, members }
                }
                // typedef, volatile, const, restrict, type_tag
                8..=11 | 18 => {
                    if kind == KIND_TYPEDEF {
                        typedefs.entry(name(name_off)).or_insert(id);
                    }
                    Type::Modifier { type_id: size_or_type }
                }
                KIND_PTR => Type::Pointer { type_id: size_or_type },
                KIND_FUNC_PROTO => {
                    off += vlen * 8;
                    Type::FuncProto { params: vlen as u32 }
                }
                _ => {
                    off += match kind {
                        1 | 14 | 17 => 4,     // int, var, decl_tag
                        3 => 12,              // array
                        6 => vlen * 8,        // enum
                        15 | 19 => vlen * 12, // datasec, enum64
                        7 | 12 | 16 => 0,     // fwd, func, float
                        _ => return Err(BtfError::Malformed("unknown type kind")),
                    };
                    Type::Other
                }
            };
            types.push(ty);
        }
        Ok(Self { types, structs, typedefs })
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous structs/unions.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self.structs.get(strukt).ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let no_member = || BtfError::NoMember { strukt: strukt.into(), member: member.into() };
        let (bits, bitfield) = self.find(id, member, 0).ok_or_else(no_member)?;
        if bitfield != 0 || bits % 8 != 0 {
            return Err(BtfError::Bitfield { strukt: strukt.into(), member: member.into() });
        }
        Ok(bits / 8)
    }

    /// `sizeof(struct strukt)`.
    pub fn struct_size(&self, strukt: &str) -> Result<u32, BtfError> {
        let id = *self.structs.get(strukt).ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        match self.resolve(id) {
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
        let mut id = *self.typedefs.get(&format!("btf_trace_{event}")).ok_or_else(missing)?;
        for _ in 0..32 {
            match self.types.get(id as usize).ok_or_else(missing)? {
                Type::Modifier { type_id } | Type::Pointer { type_id } => id = *type_id,
                Type::FuncProto { params } => return params.checked_sub(1).ok_or_else(missing),
                _ => return Err(missing()),
            }
        }
        Err(missing())
    }

    fn find(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 16 {
            return None;
        }
        let Type::Composite { members, .. } = self.resolve(id)? else { return None };
        for m in members {
            if m.name == member {
                return Some((m.bit_offset, m.bitfield_size));
            }
            if m.name.is_empty() {
                if let Some((bits, size)) = self.find(m.type_id, member, depth + 1) {
                    return Some((m.bit_offset + bits, size));
                }
            }
        }
        None
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Modifier { type_id } => id = *type_id,
                t => return Some(t),
            }
        }
        None
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
            _pad0: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
