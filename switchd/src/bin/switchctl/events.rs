//! `switchctl events`: follows `GET /api/v1/events`, one line per event for people
//! (`12:00:01 mac_moved vlan 10 02:00:00:00:00:01 vm1 -> vm2`), or one JSON object per line
//! with `--json` (`{"id":1,"event":"mac_moved","data":{...}}`).

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use crate::http::{self, SseEvent};
use crate::{enc, Ctx, Problem};

/// Follows the stream until the server ends it (or `count` events have come).
pub fn follow(ctx: &Ctx, types: Option<String>, count: Option<u64>) -> Result<()> {
    let path = match types {
        Some(t) => format!("/api/v1/events?types={}", enc(&t)),
        None => "/api/v1/events".to_string(),
    };
    let mut left = count;
    let out = std::io::stdout();
    let answer = http::follow(
        &ctx.client.server,
        ctx.client.token.as_deref(),
        &path,
        |e| {
            let line = if ctx.json {
                json_line(&e)
            } else {
                format!("{} {}", clock(std::time::SystemTime::now()), describe(&e))
            };
            let mut out = out.lock();
            writeln!(out, "{line}")?;
            // Each line as it comes, also into a pipe.
            out.flush()?;
            Ok(match left.as_mut() {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n > 0
                }
                None => true,
            })
        },
    )?;
    match answer {
        Some(r) => Err(Problem::of(r).into()),
        None => Ok(()),
    }
}

/// `{"id":N,"event":TYPE,"data":DATA}` on one line (the data as the server sent it, or as a
/// string if it is not JSON).
fn json_line(e: &SseEvent) -> String {
    let data = serde_json::from_str::<Value>(&e.data).unwrap_or(Value::String(e.data.clone()));
    serde_json::json!({
        "id": e.id.parse::<u64>().map_or(Value::String(e.id.clone()), Value::from),
        "event": e.event,
        "data": data,
    })
    .to_string()
}

/// The event for people: its type, then its fields in words.
pub fn describe(e: &SseEvent) -> String {
    let Ok(d) = serde_json::from_str::<Value>(&e.data) else {
        return format!("{} {}", e.event, e.data);
    };
    let s = |k: &str| match &d[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        v => v.to_string(),
    };
    let what = match e.event.as_str() {
        "mac_learned" => format!("vlan {} {} on {}", s("vlan"), s("mac"), s("port")),
        "mac_moved" => format!(
            "vlan {} {} {} -> {}{}",
            s("vlan"),
            s("mac"),
            s("from"),
            s("to"),
            if d["flapping"] == true {
                " (flapping)"
            } else {
                ""
            }
        ),
        "mac_aged" => format!("vlan {} {} was on {}", s("vlan"), s("mac"), s("port")),
        "mac_limit" | "mac_not_allowed" | "port_shutdown" => {
            format!("vlan {} {} on {}", s("vlan"), s("mac"), s("port"))
        }
        "link" => format!(
            "{} {}",
            s("port"),
            if d["up"] == true { "up" } else { "down" }
        ),
        "config_applied" => d["changes"]
            .as_array()
            .map(|changes| {
                changes
                    .iter()
                    .map(|c| {
                        let f = |k: &str| c[k].as_str().unwrap_or("-").to_string();
                        let name = f("name");
                        let whose = if name.is_empty() {
                            f("what")
                        } else {
                            format!("{} {name}", f("what"))
                        };
                        format!("{whose} {}: {} -> {}", f("field"), f("old"), f("new"))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        "port_error" => format!("{}: {}", s("port"), s("reason")),
        "drops" => format!("{} {} {} frames", s("port"), s("reason"), s("frames")),
        "summary" => {
            let suppressed = d["suppressed"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!(
                "over the rate bound: {}; lost: {}",
                if suppressed.is_empty() {
                    "none".to_string()
                } else {
                    suppressed
                },
                s("lost")
            )
        }
        _ => e.data.clone(),
    };
    format!("{} {what}", e.event)
}

/// `HH:MM:SS` of `t` in local time.
fn clock(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: `tm` is a plain C struct for which all zeroes is a valid value (its one pointer,
    // `tm_zone`, null).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `secs` and writes only into `tm`, both valid for the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return "--:--:--".to_string();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            id: "7".into(),
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn each_event_reads_as_a_line() {
        let cases = [
            (
                ev(
                    "mac_moved",
                    r#"{"vlan":10,"mac":"02:00:00:00:00:01","from":"vm1","to":"vm2","flapping":false}"#,
                ),
                "mac_moved vlan 10 02:00:00:00:00:01 vm1 -> vm2",
            ),
            (ev("link", r#"{"port":"vm1","up":false}"#), "link vm1 down"),
            (
                ev(
                    "config_applied",
                    r#"{"changes":[{"what":"port","name":"vm1","field":"vlan","old":"10","new":"20"},{"what":"switch","name":"","field":"mac_aging_secs","old":"300","new":"60"}]}"#,
                ),
                "config_applied port vm1 vlan: 10 -> 20; switch mac_aging_secs: 300 -> 60",
            ),
            (
                ev(
                    "drops",
                    r#"{"port":"vm1","reason":"tagged_on_access","frames":5}"#,
                ),
                "drops vm1 tagged_on_access 5 frames",
            ),
            (
                ev("summary", r#"{"suppressed":{"mac_learned":1900},"lost":3}"#),
                "summary over the rate bound: mac_learned=1900; lost: 3",
            ),
            (ev("new_kind", r#"{"x":1}"#), r#"new_kind {"x":1}"#),
        ];
        for (e, want) in cases {
            assert_eq!(describe(&e), want);
        }
        assert_eq!(
            json_line(&ev("link", r#"{"port":"vm1","up":true}"#)),
            r#"{"data":{"port":"vm1","up":true},"event":"link","id":7}"#
        );
        assert_eq!(clock(std::time::UNIX_EPOCH).len(), 8);
    }
}
