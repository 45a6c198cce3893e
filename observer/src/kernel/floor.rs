//! `observer floor`: the cost floor `cargo xtask bench` measures observer's programs against.
//!
//! One empty program per hook, of the program type observer's own program there has
//! (`observer-ebpf`'s `probes/floor.rs`), loaded from the same object and attached beside
//! observer's, unpinned (they end with the process). With `kernel.bpf_stats_enabled` the
//! kernel accounts each program's run time (`bpf_prog_run()` wraps it in two clock reads:
//! include/linux/filter.h `__bpf_prog_run()`, kernel/bpf/trampoline.c for tp_btf), so in the
//! same storm the two programs at a hook give what observer costs and what any program there
//! costs.
//!
//! Beside some floors, a one-load reference (`load_*`): the empty program plus the one array
//! load observer's filter makes there (its own instance of the prefilter array, keyed the same
//! way). In storms that thrash the caches any data line is a miss; the reference shows what
//! consulting one word of state costs at that hook. `--empty-only` attaches the floors alone
//! (the bench attaches one set before the daemon, so the floor is measured both in the first
//! place at the hook and after observer's program).

use aya::{Ebpf, EbpfLoader};

use super::{
    compat::FeatureId,
    loader::{attach_unpinned, load_program, LoadError, ProbeSpec, ProgramKind, OBJECT, PROBES},
};

const FLOOR: &str = "an empty program: the cost floor of the hook";
const LOAD: &str = "the floor plus one prefilter-array load";

const fn reference(
    program: &'static str,
    kind: ProgramKind,
    category: &'static str,
    event: &'static str,
    purpose: &'static str,
) -> ProbeSpec {
    ProbeSpec {
        program,
        kind,
        category,
        event,
        requires: match kind {
            ProgramKind::TracePoint => FeatureId::ClassicTracepoints,
            ProgramKind::BtfTracePoint => FeatureId::TpBtf,
        },
        only: None,
        emits: &[],
        purpose,
    }
}

/// The empty programs, one per hook observer attaches to.
pub const FLOORS: &[ProbeSpec] = &[
    reference("floor_sig_gen", ProgramKind::BtfTracePoint, "signal", "signal_generate", FLOOR),
    reference("floor_sig_dlv", ProgramKind::BtfTracePoint, "signal", "signal_deliver", FLOOR),
    reference("floor_exit", ProgramKind::BtfTracePoint, "sched", "sched_process_exit", FLOOR),
    reference("floor_exec", ProgramKind::BtfTracePoint, "sched", "sched_process_exec", FLOOR),
    reference("floor_cg_mkdir", ProgramKind::TracePoint, "cgroup", "cgroup_mkdir", FLOOR),
    reference("floor_cg_rmdir", ProgramKind::TracePoint, "cgroup", "cgroup_rmdir", FLOOR),
    reference("floor_oom", ProgramKind::TracePoint, "oom", "mark_victim", FLOOR),
    reference("floor_sock", ProgramKind::BtfTracePoint, "sock", "inet_sock_set_state", FLOOR),
];

/// The one-load references, at the hooks whose filter is one array load.
pub const LOADS: &[ProbeSpec] = &[
    reference("load_exit", ProgramKind::BtfTracePoint, "sched", "sched_process_exit", LOAD),
    reference("load_exec", ProgramKind::BtfTracePoint, "sched", "sched_process_exec", LOAD),
    reference("load_cg_mkdir", ProgramKind::TracePoint, "cgroup", "cgroup_mkdir", LOAD),
    reference("load_cg_rmdir", ProgramKind::TracePoint, "cgroup", "cgroup_rmdir", LOAD),
];

/// The floor of observer's program `program` (the one at its hook).
pub fn floor_of(program: &str) -> Option<&'static ProbeSpec> {
    let p = PROBES.iter().find(|p| p.program == program)?;
    FLOORS.iter().find(|f| (f.category, f.event) == (p.category, p.event))
}

/// Loads the object (its maps are made, unused: this process's own) and attaches every floor
/// program, and the one-load references unless `empty_only`; they stay attached as long as
/// the returned object lives.
pub fn attach(empty_only: bool) -> Result<Ebpf, LoadError> {
    let btf = aya::Btf::from_sys_fs()?;
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| LoadError::Object(Box::new(e)))?;
    let loads = if empty_only { &[][..] } else { LOADS };
    for spec in FLOORS.iter().chain(loads) {
        load_program(&mut ebpf, spec, &btf)?;
        attach_unpinned(&mut ebpf, spec)?;
    }
    Ok(ebpf)
}

/// What `observer floor` prints first: each floor program, its hook, its one-load reference
/// if attached, and observer's programs there (one JSON object).
pub fn describe(empty_only: bool) -> serde_json::Value {
    let floors: Vec<serde_json::Value> = FLOORS
        .iter()
        .map(|f| {
            let probes: Vec<&str> = PROBES
                .iter()
                .filter(|p| (p.category, p.event) == (f.category, f.event))
                .map(|p| p.program)
                .collect();
            let load = LOADS
                .iter()
                .find(|l| !empty_only && (l.category, l.event) == (f.category, f.event))
                .map(|l| l.program);
            serde_json::json!({
                "floor": f.program,
                "load": load,
                "kind": f.kind.as_str(),
                "hook": format!("{}/{}", f.category, f.event),
                "probes": probes,
            })
        })
        .collect();
    serde_json::json!({ "floors": floors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_has_a_floor_of_its_program_type_at_its_hook() {
        for p in PROBES {
            let f = floor_of(p.program).unwrap_or_else(|| panic!("no floor for {}", p.program));
            assert_eq!(f.kind.as_str(), p.kind.as_str(), "{}", p.program);
        }
        // Kernel program names are cut at 15 characters: the floors' must not be.
        assert!(FLOORS.iter().chain(LOADS).all(|f| f.program.len() <= 15));
        // Each reference sits at one of the floors' hooks, with the floor's program type.
        for l in LOADS {
            let f = FLOORS.iter().find(|f| (f.category, f.event) == (l.category, l.event));
            assert_eq!(f.map(|f| f.kind.as_str()), Some(l.kind.as_str()), "{}", l.program);
        }
    }
}
