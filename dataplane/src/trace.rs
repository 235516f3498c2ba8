//! Why a frame goes where it goes: the forwarding decision, step by step, for people and
//! scripts.
//!
//! [`trace`] runs the functions the workers run, [`classify`], [`decide_classified`] and
//! [`egress_ports`], on one frame, against the running snapshot and FDB, and names what each
//! step found and the rule behind it. The verdict (dropped and why, filtered, or the egress
//! ports with their tag actions) is the decision's own result, never a second copy of its
//! rules. By default nothing is learned and no counter moves: the table is read through
//! [`DryRun`], which answers what learning would do ([`Fdb::would_learn`]); `learn: true` learns
//! as the worker would.
//!
//! [`Trace`] is plain data; the REST API and `switchctl trace` render it.
#![forbid(unsafe_code)]

use std::borrow::Cow;

use crate::config::{LimitAction, PortId, PortMode, Snapshot};
use crate::counters::DropReason;
use crate::fdb::{Fdb, Learned};
use crate::forward::{classify, decide_classified, egress_ports, Decision, DryRun, Out};
use crate::watch::Sent;
use crate::wire::{EgressTag, EthernetFrame, MacAddr};

/// What the decision needs to know of a port's handle beyond its configuration.
pub trait PortState {
    /// Shut down by port security: frames from and to it are dropped.
    fn is_disabled(&self) -> bool;
}

impl PortState for () {
    fn is_disabled(&self) -> bool {
        false
    }
}

/// The stage of the decision a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Stage {
    /// Reading the Ethernet header.
    Parse,
    /// The ingress port itself (known, enabled).
    Ingress,
    /// Which VLAN the frame belongs to, by the ingress port's mode.
    Classify,
    /// The ingress port's allowed source MACs.
    Security,
    /// Learning the source MAC.
    Learn,
    /// Looking the destination MAC up.
    Lookup,
    /// One candidate egress port.
    Egress,
}

/// One step: its stage, the rule that applied (a stable snake_case name), and what it found, in
/// words.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    /// The stage.
    pub stage: Stage,
    /// The rule, e.g. `access_untagged`, `trunk_vid_not_allowed`, `dst_hit`.
    pub rule: Cow<'static, str>,
    /// What happened, for people.
    pub detail: String,
}

/// What happens to the frame's tag on one egress port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TagAction {
    /// Untagged in, untagged out.
    None,
    /// Untagged in, tagged out: a tag with the VLAN's VID is pushed.
    Push,
    /// Tagged in, untagged out: the tag is removed.
    Pop,
    /// Tagged in with the VLAN's VID, tagged out: kept as it is.
    Keep,
    /// Tagged in with another VID (a priority tag, VID 0), tagged out with the VLAN's VID.
    Rewrite,
}

impl TagAction {
    /// The action that turns `frame` into its copy for a port carrying the VLAN `vlan` as `how`.
    pub fn of(frame: &EthernetFrame<'_>, vlan: u16, how: EgressTag) -> TagAction {
        match (frame.vid(), how) {
            (None, EgressTag::Untagged) => TagAction::None,
            (None, EgressTag::Tagged) => TagAction::Push,
            (Some(_), EgressTag::Untagged) => TagAction::Pop,
            (Some(v), EgressTag::Tagged) if v == vlan => TagAction::Keep,
            (Some(_), EgressTag::Tagged) => TagAction::Rewrite,
        }
    }
}

/// One copy of the frame that would be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Egress {
    /// The egress port.
    pub port: String,
    /// Its tag handling for the frame's VLAN.
    pub tag: TagAction,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Verdict {
    /// Dropped on the ingress port, counted under [`Trace::drop_reason`].
    Dropped,
    /// Sent nowhere: the destination sits behind the ingress port, or the VLAN has no other
    /// member.
    Filtered,
    /// Sent, one copy per [`Trace::egress`] port.
    Forwarded,
}

/// A frame's decision, step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trace {
    /// The ingress port.
    pub ingress: String,
    /// The steps, in the order the decision takes them.
    pub steps: Vec<Step>,
    /// The outcome.
    pub verdict: Verdict,
    /// The frame's VLAN; absent when it was dropped before it had one.
    pub vlan: Option<u16>,
    /// For a drop: the ingress port's drop counter that moves (e.g. `tagged_on_access`).
    pub drop_reason: Option<Cow<'static, str>>,
    /// Flooded to the VLAN's members (unknown unicast, broadcast, multicast), rather than sent
    /// to one known port.
    pub flooded: bool,
    /// The copies sent, one per egress port, with their tag action.
    pub egress: Vec<Egress>,
    /// The trace learned the source as a worker would (`learn: true`); otherwise it only said
    /// what learning would do.
    pub learned: bool,
}

impl Trace {
    fn step(&mut self, stage: Stage, rule: &'static str, detail: String) {
        self.steps.push(Step {
            stage,
            rule: Cow::Borrowed(rule),
            detail,
        });
    }
}

/// Traces `bytes` arriving on port `ingress` at `now` (the switch's seconds), as a worker
/// would forward it. `learn`: learn the source as the worker would; otherwise the FDB is only
/// read.
pub fn trace<H: PortState>(
    snap: &Snapshot<H>,
    fdb: &Fdb,
    bytes: &[u8],
    ingress: PortId,
    now: u32,
    learn: bool,
) -> Trace {
    let decision = decide_frame(snap, fdb, bytes, ingress, now, learn);
    let mut sent = Vec::new();
    if let Ok(d) = &decision {
        for (p, how) in egress_ports(snap, d, ingress) {
            let disabled = snap.port(p).is_some_and(|e| e.port.is_disabled());
            sent.push(Sent {
                port: p,
                how,
                dropped: disabled.then_some(DropReason::PortDisabled),
            });
        }
    }
    let mut t = explain(
        snap,
        fdb,
        bytes,
        bytes.len(),
        ingress,
        now,
        decision,
        &sent,
        0,
    );
    if !learn {
        for s in t.steps.iter_mut().filter(|s| s.stage == Stage::Learn) {
            s.detail.push_str(" (dry run: the table is unchanged)");
        }
    }
    t.learned = learn;
    t
}

/// The worker's decision for `bytes` on `ingress`, in the worker's order: a disabled port's
/// frames are dropped before they are parsed, then the frame is parsed, classified and
/// decided on.
fn decide_frame<H: PortState>(
    snap: &Snapshot<H>,
    fdb: &Fdb,
    bytes: &[u8],
    ingress: PortId,
    now: u32,
    learn: bool,
) -> Result<Decision, DropReason> {
    let port = snap.port(ingress).ok_or(DropReason::NoSuchPort)?;
    if port.port.is_disabled() {
        return Err(DropReason::PortDisabled);
    }
    let frame = EthernetFrame::parse(bytes).map_err(|_| DropReason::BadFrame)?;
    let vlan = classify(&port.mode, frame.vid())?;
    if learn {
        decide_classified(snap, fdb, &frame, ingress, port, vlan, now)
    } else {
        decide_classified(snap, &DryRun(fdb), &frame, ingress, port, vlan, now)
    }
}

/// Explains a decision taken for a frame of `len` bytes whose first bytes are `head`, on port
/// `ingress`: `decision` and the copies `sent` (`more`: copies beyond those) are the outcome,
/// whether [`trace`] just computed it or a worker recorded it ([`crate::watch::Record`]); the
/// words come from the configuration and the table as they are at `now`.
#[allow(clippy::too_many_arguments)]
pub fn explain<H>(
    snap: &Snapshot<H>,
    fdb: &Fdb,
    head: &[u8],
    len: usize,
    ingress: PortId,
    now: u32,
    decision: Result<Decision, DropReason>,
    sent: &[Sent],
    more: u16,
) -> Trace {
    let name = |p: PortId| {
        snap.port(p)
            .map_or_else(|| format!("#{p}"), |e| e.name.clone())
    };
    let mut t = Trace {
        ingress: name(ingress),
        steps: Vec::new(),
        verdict: Verdict::Dropped,
        vlan: decision.as_ref().ok().map(|d| d.vlan),
        drop_reason: decision.as_ref().err().map(|r| Cow::Borrowed(r.name())),
        flooded: false,
        egress: Vec::new(),
        learned: true,
    };
    let Some(port) = snap.port(ingress) else {
        t.step(
            Stage::Ingress,
            "no_such_port",
            format!("no port with id {ingress}"),
        );
        return t;
    };
    if decision == Err(DropReason::PortDisabled) {
        let d = format!("port {} is shut down by port security", port.name);
        t.step(Stage::Ingress, "port_disabled", d);
        return t;
    }
    let frame = match EthernetFrame::parse(head) {
        Ok(f) => f,
        Err(e) => {
            let d = format!("{len} bytes, an Ethernet header needs {}", e.need);
            t.step(Stage::Parse, "truncated", d);
            return t;
        }
    };
    t.step(Stage::Parse, "parsed", describe(&frame, len));
    let (rule, detail) = classify_rule(&port.name, &port.mode, frame.vid());
    let vlan = match classify(&port.mode, frame.vid()) {
        Ok(v) => {
            t.step(Stage::Classify, rule, format!("{detail}: VLAN {v}"));
            v
        }
        Err(_) => {
            t.step(Stage::Classify, rule, format!("{detail}: dropped"));
            return t;
        }
    };
    let src = frame.src();
    if let Some(allowed) = &port.security.allowed {
        let admitted = port.security.admits(src);
        let rule = if admitted {
            "source_allowed"
        } else {
            "source_not_allowed"
        };
        let verb = if admitted { "is" } else { "is not" };
        let d = format!(
            "source {src} {verb} among the {} allowed MACs of {}",
            allowed.len(),
            port.name
        );
        t.step(Stage::Security, rule, d);
    }
    let d = match decision {
        Ok(d) => d,
        Err(DropReason::MacLimit) => {
            let limit = learn_limit(snap, fdb, src, ingress, vlan, now);
            t.step(Stage::Learn, limit.0, limit.1);
            return t;
        }
        Err(_) => return t,
    };
    let (rule, detail) = learn_rule(
        &name,
        &port.name,
        port.security.action,
        src,
        vlan,
        d.learned,
    );
    t.step(Stage::Learn, rule, detail);
    let dst = frame.dst();
    let (rule, detail) = lookup_rule(snap, fdb, &name, dst, vlan, ingress, now, d.out);
    t.step(Stage::Lookup, rule, detail);
    for s in sent {
        let out = name(s.port);
        let tag = TagAction::of(&frame, vlan, s.how);
        match s.dropped {
            None => {
                t.step(
                    Stage::Egress,
                    "egress",
                    egress_words(&out, vlan, s.how, tag),
                );
                t.egress.push(Egress { port: out, tag });
            }
            Some(DropReason::PortDisabled) => {
                let d = format!("{out} is shut down by port security: the copy is dropped (port_disabled on {out})");
                t.step(Stage::Egress, "egress_disabled", d);
            }
            Some(r) => {
                let d = format!(
                    "sending to {out} failed: the copy is dropped ({} on {out})",
                    r.name()
                );
                t.step(Stage::Egress, "egress_failed", d);
            }
        }
    }
    if more > 0 {
        t.step(
            Stage::Egress,
            "egress_more",
            format!("and {more} more copies"),
        );
    }
    if d.out == Out::Flood {
        if snap.members(vlan).contains(&ingress) {
            let d = format!("{} is the ingress port: a frame never goes back", port.name);
            t.step(Stage::Egress, "egress_is_ingress", d);
        }
        if sent.is_empty() {
            let d = format!("VLAN {vlan} has no other member port: sent nowhere");
            t.step(Stage::Egress, "no_other_member", d);
        }
    }
    t.verdict = if sent.is_empty() {
        Verdict::Filtered
    } else {
        Verdict::Forwarded
    };
    t.flooded = d.out == Out::Flood;
    t
}

/// The parse step's words: addresses, tag and EtherType (with IP addresses when present).
fn describe(f: &EthernetFrame<'_>, len: usize) -> String {
    let tag = match f.tci() {
        None => "untagged".to_string(),
        Some(tci) if tci & 0x0fff == 0 => format!("priority-tagged (PCP {})", tci >> 13),
        Some(tci) => format!("802.1Q VID {} PCP {}", tci & 0x0fff, tci >> 13),
    };
    let ethertype = f.inner_ethertype();
    let payload = &f.after_tag()[2..];
    let ip = match ethertype {
        0x0800 if payload.len() >= 20 => format!(
            ", IPv4 {} -> {}",
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&payload[12..16]).unwrap_or_default()),
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&payload[16..20]).unwrap_or_default())
        ),
        0x86dd if payload.len() >= 40 => format!(
            ", IPv6 {} -> {}",
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&payload[8..24]).unwrap_or_default()),
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&payload[24..40]).unwrap_or_default())
        ),
        _ => String::new(),
    };
    format!(
        "{len} bytes, {} -> {}, {tag}, EtherType 0x{ethertype:04x}{ip}",
        f.src(),
        f.dst()
    )
}

/// The classification rule for a frame with outer VID `vid` on port `name` in `mode`.
fn classify_rule(name: &str, mode: &PortMode, vid: Option<u16>) -> (&'static str, String) {
    let m = mode.describe();
    match (mode, vid) {
        (PortMode::MirrorOutput, _) => (
            "mirror_output",
            format!("{name} is a mirror's output: it takes no frames in"),
        ),
        (PortMode::Access { .. }, None) => ("access_untagged", format!("untagged on {name} ({m})")),
        (PortMode::Access { .. }, Some(0)) => (
            "access_priority_tagged",
            format!("priority-tagged on {name} ({m}), counts as untagged"),
        ),
        (PortMode::Access { .. }, Some(v)) => (
            "access_tagged",
            format!("tagged VID {v} on {name} ({m}): an access port takes untagged frames only"),
        ),
        (PortMode::Trunk { native, .. }, None | Some(0)) => match native {
            Some(_) => (
                "trunk_untagged_native",
                format!("untagged on {name} ({m}) goes to the native VLAN"),
            ),
            None => (
                "trunk_untagged_no_native",
                format!("untagged on {name} ({m}), which has no native VLAN"),
            ),
        },
        (PortMode::Trunk { allowed, native }, Some(v)) => {
            if allowed.contains(v) {
                (
                    "trunk_vid_allowed",
                    format!("tagged VID {v} on {name} ({m}), an allowed VLAN"),
                )
            } else if *native == Some(v) {
                (
                    "trunk_vid_native",
                    format!("tagged VID {v} on {name} ({m}), its native VLAN"),
                )
            } else {
                (
                    "trunk_vid_not_allowed",
                    format!("tagged VID {v} on {name} ({m}), not among its VLANs"),
                )
            }
        }
    }
}

/// The learning step for source `src` in `vlan` on port `port`.
fn learn_rule(
    name: &impl Fn(PortId) -> String,
    port: &str,
    action: LimitAction,
    src: MacAddr,
    vlan: u16,
    learned: Option<Learned>,
) -> (&'static str, String) {
    let Some(l) = learned else {
        return (
            "source_not_learnable",
            format!("source {src} is a group or zero address: not learned"),
        );
    };
    let at = format!("{src} in VLAN {vlan}");
    match l {
        Learned::New => ("learn_new", format!("{at} learned on {port}")),
        Learned::Refreshed => (
            "learn_refresh",
            format!("{at} already on {port}: refreshed"),
        ),
        Learned::Moved {
            from,
            flapping: false,
        } => (
            "learn_move",
            format!("{at} moves from {} to {port}", name(from)),
        ),
        Learned::Moved {
            from,
            flapping: true,
        } => (
            "learn_move_flapping",
            format!(
                "{at} moves from {} to {port}, and now counts as flapping",
                name(from)
            ),
        ),
        Learned::Damped { on } => (
            "learn_damped",
            format!("{at} is flapping and damped: it stays on {}", name(on)),
        ),
        Learned::StaticConflict => (
            "learn_static_conflict",
            format!("{at} has a static entry on another port: not moved"),
        ),
        Learned::NoRoom => (
            "learn_no_room",
            format!("{at}: the MAC table is full, not learned"),
        ),
        Learned::PortLimit | Learned::VlanLimit => {
            let whose = if l == Learned::PortLimit {
                format!("port {port}")
            } else {
                format!("VLAN {vlan}")
            };
            let then = match action {
                LimitAction::Flood => "not learned, the frame is forwarded (limit action flood)",
                _ => "not learned, and the frame is dropped",
            };
            let rule = if l == Learned::PortLimit {
                "learn_port_limit"
            } else {
                "learn_vlan_limit"
            };
            (rule, format!("{at}: {whose} is at its MAC limit: {then}"))
        }
    }
}

/// The learning step of a frame the decision dropped for a MAC limit: which limit.
fn learn_limit<H>(
    snap: &Snapshot<H>,
    fdb: &Fdb,
    src: MacAddr,
    ingress: PortId,
    vlan: u16,
    now: u32,
) -> (&'static str, String) {
    let Some(port) = snap.port(ingress) else {
        return ("learn_port_limit", String::new());
    };
    let l = fdb.would_learn(vlan, src, ingress, now, &snap.learn_rules(port, vlan));
    let l = if l == Learned::VlanLimit {
        l
    } else {
        Learned::PortLimit
    };
    let name = |p: PortId| {
        snap.port(p)
            .map_or_else(|| format!("#{p}"), |e| e.name.clone())
    };
    learn_rule(&name, &port.name, port.security.action, src, vlan, Some(l))
}

/// The lookup step: why the decision chose `out` for `dst`.
#[allow(clippy::too_many_arguments)]
fn lookup_rule<H>(
    snap: &Snapshot<H>,
    fdb: &Fdb,
    name: &impl Fn(PortId) -> String,
    dst: MacAddr,
    vlan: u16,
    ingress: PortId,
    now: u32,
    out: Out,
) -> (&'static str, String) {
    if dst.is_multicast() {
        let what = if dst.0 == [0xff; 6] {
            "broadcast"
        } else {
            "multicast"
        };
        return (
            "dst_multicast",
            format!("{dst} is {what}: flooded in VLAN {vlan}"),
        );
    }
    let entry = fdb.entry(vlan, dst, now, snap.aging_secs);
    let seen = |e: &crate::fdb::FdbEntry| {
        if e.is_static {
            "static".to_string()
        } else {
            format!("last seen {} s ago", now.wrapping_sub(e.last_seen))
        }
    };
    match (out, entry) {
        (Out::Unicast(p), Some(e)) => (
            "dst_hit",
            format!("{dst} in VLAN {vlan} is on {} ({})", name(p), seen(&e)),
        ),
        (Out::Filtered, Some(e)) => (
            "dst_behind_ingress",
            format!(
                "{dst} in VLAN {vlan} is on {}, the ingress port ({}): not sent",
                name(ingress),
                seen(&e)
            ),
        ),
        (Out::Flood, Some(e)) => (
            "dst_stale",
            format!(
                "{dst} was learned on {}, which no longer carries VLAN {vlan}: flooded",
                name(e.port)
            ),
        ),
        // The entry aged or moved between the decision and this look: say what the decision saw.
        (Out::Unicast(p), None) => ("dst_hit", format!("{dst} in VLAN {vlan} is on {}", name(p))),
        (Out::Filtered, None) => (
            "dst_behind_ingress",
            format!("{dst} in VLAN {vlan} is on the ingress port"),
        ),
        (Out::Flood, None) => (
            "dst_miss",
            format!("{dst} is not in VLAN {vlan}'s MAC table: flooded"),
        ),
    }
}

/// The words for one copy.
fn egress_words(out: &str, vlan: u16, how: EgressTag, tag: TagAction) -> String {
    let carries = match how {
        EgressTag::Untagged => format!("{out} carries VLAN {vlan} untagged"),
        EgressTag::Tagged => format!("{out} carries VLAN {vlan} tagged"),
    };
    let action = match tag {
        TagAction::None => "sent untagged as received".to_string(),
        TagAction::Push => format!("tag VID {vlan} pushed"),
        TagAction::Pop => "tag popped".to_string(),
        TagAction::Keep => format!("tag VID {vlan} kept"),
        TagAction::Rewrite => format!("tag rewritten to VID {vlan}"),
    };
    format!("{carries}: {action}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortEntry, PortSecurity};
    use crate::forward::decide;

    fn mac(n: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, n]
    }

    const BCAST: [u8; 6] = [0xff; 6];

    fn frame(dst: [u8; 6], src: [u8; 6], vid: Option<u16>) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        if let Some(v) = vid {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&[0x88, 0xb5]);
        f.resize(60, 0);
        f
    }

    /// Ports: a (access 10), b (access 10), c (access 20), t (trunk 10,20 native 1), n (trunk
    /// 10, no native), s (access 10, allows only mac(1)), l (access 10, at most one MAC, drop).
    fn lab() -> Snapshot {
        let mut ports = vec![
            PortEntry::new("a", PortMode::Access { vlan: 10 }, ()),
            PortEntry::new("b", PortMode::Access { vlan: 10 }, ()),
            PortEntry::new("c", PortMode::Access { vlan: 20 }, ()),
            PortEntry::new("t", PortMode::trunk([10, 20], Some(1)), ()),
            PortEntry::new("n", PortMode::trunk([10], None), ()),
            PortEntry::new("s", PortMode::Access { vlan: 10 }, ()),
            PortEntry::new("l", PortMode::Access { vlan: 10 }, ()),
        ];
        ports[5].security = PortSecurity {
            allowed: Some(vec![MacAddr(mac(1))].into()),
            ..PortSecurity::default()
        };
        ports[6].security = PortSecurity {
            max_macs: 1,
            action: LimitAction::Drop,
            allowed: None,
        };
        Snapshot::new(ports.into_iter().map(Some).collect(), 300)
    }

    fn rules(t: &Trace) -> Vec<&str> {
        t.steps.iter().map(|s| s.rule.as_ref()).collect()
    }

    /// For each rule of classification, port security, learning and lookup that one frame can
    /// show (the rules that need a history are in the next test): the trace names it, and its
    /// verdict is what `decide` (the worker's function) does to the same frame in a table in
    /// the same state.
    #[test]
    fn every_rule_is_named_and_agrees_with_the_decision() {
        struct Case {
            ingress: PortId,
            bytes: Vec<u8>,
            rule: &'static str,
        }
        let c = |ingress, bytes, rule| Case {
            ingress,
            bytes,
            rule,
        };
        let cases = [
            c(0, frame(BCAST, mac(1), None), "access_untagged"),
            c(0, frame(BCAST, mac(1), Some(0)), "access_priority_tagged"),
            c(0, frame(BCAST, mac(1), Some(20)), "access_tagged"),
            c(3, frame(BCAST, mac(7), None), "trunk_untagged_native"),
            c(4, frame(BCAST, mac(7), None), "trunk_untagged_no_native"),
            c(3, frame(BCAST, mac(7), Some(20)), "trunk_vid_allowed"),
            c(3, frame(BCAST, mac(7), Some(1)), "trunk_vid_native"),
            c(3, frame(BCAST, mac(7), Some(30)), "trunk_vid_not_allowed"),
            c(0, vec![0; 13], "truncated"),
            c(5, frame(BCAST, mac(9), None), "source_not_allowed"),
            c(5, frame(BCAST, mac(1), None), "source_allowed"),
            c(
                0,
                frame(BCAST, [1, 0, 0x5e, 0, 0, 1], None),
                "source_not_learnable",
            ),
            c(0, frame(BCAST, mac(30), None), "learn_new"),
            c(0, frame(BCAST, mac(20), None), "learn_refresh"),
            c(1, frame(BCAST, mac(20), None), "learn_move"),
            c(6, frame(BCAST, mac(41), None), "learn_port_limit"),
            c(
                1,
                frame([1, 0, 0x5e, 0, 0, 1], mac(3), None),
                "dst_multicast",
            ),
            c(1, frame(mac(20), mac(3), None), "dst_hit"),
            c(0, frame(mac(20), mac(3), None), "dst_behind_ingress"),
            c(1, frame(mac(99), mac(3), None), "dst_miss"),
            c(1, frame(mac(21), mac(3), None), "dst_stale"),
            c(0, frame(BCAST, mac(3), None), "egress"),
            c(0, frame(BCAST, mac(3), None), "egress_is_ingress"),
            c(3, frame(BCAST, mac(4), None), "no_other_member"),
        ];
        let s = lab();
        for case in cases {
            // Two tables in the same state: one traced, one decided on by the worker's function.
            let (traced, decided) = (Fdb::new(64), Fdb::new(64));
            for f in [&traced, &decided] {
                f.learn(10, MacAddr(mac(20)), 0, 0, 300); // mac(20) on a
                f.learn(10, MacAddr(mac(40)), 6, 0, 300); // l is at its limit
                f.learn(10, MacAddr(mac(21)), 2, 0, 300); // on c, which is not in VLAN 10
            }
            let t = trace(&s, &traced, &case.bytes, case.ingress, 1, false);
            assert!(rules(&t).contains(&case.rule), "{}: {:#?}", case.rule, t);
            assert_eq!(traced.len(), 3, "{}: a dry trace learns nothing", case.rule);
            let worker = EthernetFrame::parse(&case.bytes)
                .map_err(|_| DropReason::BadFrame)
                .and_then(|f| {
                    let d = decide(&s, &decided, &f, case.ingress, 1)?;
                    Ok((d, egress_ports(&s, &d, case.ingress).collect::<Vec<_>>()))
                });
            match (t.verdict, worker) {
                (Verdict::Dropped, Err(r)) => {
                    assert_eq!(t.drop_reason.as_deref(), Some(r.name()), "{}", case.rule)
                }
                (Verdict::Filtered, Ok((d, e))) => {
                    assert!(e.is_empty(), "{}", case.rule);
                    assert_eq!(t.vlan, Some(d.vlan));
                }
                (Verdict::Forwarded, Ok((d, e))) => {
                    assert_eq!(t.vlan, Some(d.vlan), "{}", case.rule);
                    assert_eq!(t.flooded, d.out == Out::Flood, "{}", case.rule);
                    let names: Vec<_> = e
                        .iter()
                        .map(|(p, _)| s.port(*p).unwrap().name.clone())
                        .collect();
                    let traced: Vec<_> = t.egress.iter().map(|e| e.port.clone()).collect();
                    assert_eq!(traced, names, "{}", case.rule);
                }
                (v, w) => panic!("{}: trace says {v:?}, the decision {w:?}", case.rule),
            }
        }
    }

    /// A port handle that can be shut down, for the port-security rules.
    #[derive(Debug, Clone, Copy)]
    struct Shut(bool);

    impl PortState for Shut {
        fn is_disabled(&self) -> bool {
            self.0
        }
    }

    /// The rules that need a history (moves, flaps, damping), a full table, a VLAN limit, a
    /// static entry or a shut-down port: each named, each agreeing with the decision.
    #[test]
    fn learning_and_shutdown_rules_are_named() {
        use crate::config::{FlapPolicy, Learning};
        let snap = |shut: [bool; 3], vlan_max: u32| {
            let ports = ["a", "b", "c"]
                .iter()
                .zip(shut)
                .map(|(n, s)| Some(PortEntry::new(*n, PortMode::Access { vlan: 10 }, Shut(s))))
                .collect();
            let flap = FlapPolicy {
                moves: 2,
                window_secs: 10,
                damp_secs: 5,
            };
            Snapshot::new(ports, 300).with_learning(Learning::new(|_| vlan_max, flap))
        };
        let s = snap([false; 3], 100);
        let fdb = Fdb::new(64);
        let f = |src: u8| frame(BCAST, mac(src), None);
        let rule = |s: &Snapshot<Shut>, fdb: &Fdb, ingress: PortId, learn: bool, src: u8| {
            let t = trace(s, fdb, &f(src), ingress, 1, learn);
            let r = t
                .steps
                .iter()
                .find(|s| s.stage == Stage::Learn)
                .map(|s| s.rule.to_string());
            (r, t)
        };
        // mac(1) on a, then b (a move), then a again (a flap), then b (damped).
        for (ingress, want) in [
            (0, "learn_new"),
            (1, "learn_move"),
            (0, "learn_move_flapping"),
            (1, "learn_damped"),
        ] {
            let (dry, _) = rule(&s, &fdb, ingress, false, 1);
            let (did, _) = rule(&s, &fdb, ingress, true, 1);
            assert_eq!((dry.as_deref(), did.as_deref()), (Some(want), Some(want)));
        }
        fdb.add_static(10, MacAddr(mac(2)), 0);
        assert_eq!(
            rule(&s, &fdb, 1, false, 2).0.as_deref(),
            Some("learn_static_conflict")
        );
        let full = Fdb::new(1);
        full.learn(10, MacAddr(mac(3)), 0, 1, 300);
        assert_eq!(
            rule(&s, &full, 1, false, 4).0.as_deref(),
            Some("learn_no_room")
        );
        let limited = snap([false; 3], 1);
        assert_eq!(
            rule(&limited, &full, 1, false, 4).0.as_deref(),
            Some("learn_no_room")
        );
        let one = Fdb::new(64);
        one.learn(10, MacAddr(mac(3)), 0, 1, 300);
        assert_eq!(
            rule(&limited, &one, 1, false, 4).0.as_deref(),
            Some("learn_vlan_limit")
        );
        // A shut-down ingress port drops; a shut-down egress port's copy is dropped there.
        let shut = snap([true, false, true], 100);
        let (_, t) = rule(&shut, &fdb, 0, false, 5);
        assert_eq!(rules(&t), ["port_disabled"]);
        assert_eq!(t.drop_reason.as_deref(), Some("port_disabled"));
        let (_, t) = rule(&shut, &fdb, 1, false, 5);
        assert!(rules(&t).contains(&"egress_disabled"), "{t:#?}");
        assert_eq!(t.verdict, Verdict::Forwarded);
        assert!(t.egress.is_empty(), "the one copy was dropped");
    }

    #[test]
    fn tag_actions() {
        let untagged = frame(BCAST, mac(1), None);
        let tagged = frame(BCAST, mac(1), Some(10));
        let prio = frame(BCAST, mac(1), Some(0));
        let f = |b: &[u8]| EthernetFrame::parse(b).unwrap().vid();
        let act = |b: &Vec<u8>, how| TagAction::of(&EthernetFrame::parse(b).unwrap(), 10, how);
        assert_eq!(f(&untagged), None);
        assert_eq!(act(&untagged, EgressTag::Untagged), TagAction::None);
        assert_eq!(act(&untagged, EgressTag::Tagged), TagAction::Push);
        assert_eq!(act(&tagged, EgressTag::Untagged), TagAction::Pop);
        assert_eq!(act(&tagged, EgressTag::Tagged), TagAction::Keep);
        assert_eq!(act(&prio, EgressTag::Tagged), TagAction::Rewrite);
    }

    #[test]
    fn learning_trace_learns_as_the_worker() {
        let s = lab();
        let fdb = Fdb::new(64);
        let t = trace(&s, &fdb, &frame(BCAST, mac(5), None), 0, 1, true);
        assert_eq!(rules(&t)[2..4], ["learn_new", "dst_multicast"]);
        assert_eq!(fdb.lookup(10, MacAddr(mac(5)), 1, 300), Some(0));
        let t = trace(&s, &fdb, &frame(mac(5), mac(6), None), 1, 1, false);
        assert_eq!(
            (t.verdict, t.vlan, t.flooded),
            (Verdict::Forwarded, Some(10), false)
        );
        assert_eq!(
            t.egress,
            [Egress {
                port: "a".into(),
                tag: TagAction::None
            }]
        );
    }
}
