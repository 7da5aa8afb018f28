//! `/metrics`: Prometheus text from every part's counters, and the traffic of the busiest targets
//! and of those under attack.
//!
//! The traffic's series are bounded: the busiest `api.metrics.top_targets` (at most
//! [`MAX_TOP_TARGETS`]) and up to [`MAX_ATTACKED_TARGETS`] more under attack, at most
//! [`SERIES_PER_TARGET`] series each; the engine chooses them in one request (a heap over its
//! table, not a sort of it).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::state::ApiState;
use crate::detect::{Class, ClassView, TargetView, Traffic};

/// The busiest targets with series of their own, unless `api.metrics.top_targets` says otherwise.
pub const DEFAULT_TOP_TARGETS: usize = 20;
/// Most `api.metrics.top_targets`.
pub const MAX_TOP_TARGETS: usize = 200;
/// Most targets under attack with series of their own beside the busiest, the loudest first.
pub const MAX_ATTACKED_TARGETS: usize = 500;
/// Most series of one target: its packets and bits per second and whether it is under attack,
/// and per class (those with traffic or a baseline of 1 pps or more) its rate, baseline and
/// threshold.
pub const SERIES_PER_TARGET: usize = 3 + 3 * Class::ALL.len();

/// A label value as the text format wants it: backslash, double quote and newline escaped.
pub(super) fn label(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether a class of a target has series: traffic now, or a baseline of 1 pps or more. Idle
/// classes (most of them, on most targets) have none.
fn shown(c: &ClassView) -> bool {
    c.pps > 0 || c.baseline_pps >= 1.0
}

/// The traffic's families: per target, then per class of it. Every family's HELP and TYPE are
/// written even with no target to show.
pub(super) fn traffic(out: &mut String, t: &Traffic) {
    let head = |out: &mut String, name: &str, help: &str| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
    };
    head(
        out,
        "deflect_targets_under_attack",
        &format!(
            "Addresses under an attack, all of them (the loudest {MAX_ATTACKED_TARGETS} beyond the busiest have deflect_target_* series)."
        ),
    );
    let _ = writeln!(out, "deflect_targets_under_attack {}", t.under_attack);
    type PerTarget = fn(&TargetView, bool) -> u64;
    let per_target: [(&str, &str, PerTarget); 3] = [
        (
            "deflect_target_pps",
            "Packets per second to the address in the last interval (trusted sources apart), for the busiest (api.metrics.top_targets) and those under attack.",
            |v, _| v.pps,
        ),
        (
            "deflect_target_bps",
            "Bits per second to the address in the last interval (trusted sources apart).",
            |v, _| v.bps,
        ),
        (
            "deflect_target_under_attack",
            "Whether the address is under an attack (1) or not (0).",
            |_, a| u64::from(a),
        ),
    ];
    for (name, help, get) in per_target {
        head(out, name, help);
        for (v, attacked) in &t.targets {
            let _ = writeln!(
                out,
                "{name}{{target=\"{}\",group=\"{}\"}} {}",
                v.addr,
                label(&v.group),
                get(v, *attacked)
            );
        }
    }
    type PerClass = fn(&ClassView) -> f64;
    let per_class: [(&str, &str, PerClass); 3] = [
        (
            "deflect_target_class_pps",
            "Packets per second to the address in the class in the last interval.",
            |c| c.pps as f64,
        ),
        (
            "deflect_target_class_baseline_pps",
            "The class's learned baseline (mean) on the address, packets per second.",
            |c| c.baseline_pps,
        ),
        (
            "deflect_target_class_threshold_pps",
            "The rate at which an attack starts in the class on the address, packets per second.",
            |c| c.threshold_pps,
        ),
    ];
    for (name, help, get) in per_class {
        head(out, name, help);
        for (v, _) in &t.targets {
            let group = label(&v.group);
            for c in v.classes.iter().filter(|c| shown(c)) {
                let _ = writeln!(
                    out,
                    "{name}{{target=\"{}\",group=\"{group}\",class=\"{}\"}} {:.0}",
                    v.addr,
                    c.class.name(),
                    get(c)
                );
            }
        }
    }
}

pub(super) async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    // First: the engine is asked before anything is read here, so the counters are as late as
    // its answer.
    let top = s.top_targets.load(Ordering::Relaxed);
    let seen = s.engine.traffic(top, MAX_ATTACKED_TARGETS).await;
    let m = &s.mitigations.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    counter(
        "deflect_mitigations_active",
        "Mitigations active now.",
        "gauge",
        m.active.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_created_total",
        "Mitigations created.",
        "counter",
        m.created.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_refused_total",
        "Requests refused by a guardrail or as invalid.",
        "counter",
        m.refused.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_rate_limited_total",
        "API requests refused with 429: their token's requests a second were spent.",
        "counter",
        s.metrics.rate_limited.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_node_certificate_refused_total",
        "Requests refused: a node token on a client certificate that does not name the node.",
        "counter",
        s.metrics.node_certificate_refused.load(Ordering::Relaxed),
    );
    let srv = &s.server;
    counter(
        "deflect_api_connections_total",
        "API connections accepted.",
        "counter",
        srv.connections.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_connections_open",
        "API connections open now.",
        "gauge",
        srv.connections_open.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_connections_refused_total",
        "API connections closed at once: api.max_connections were open, all busy with a request.",
        "counter",
        srv.connections_refused.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_connections_evicted_total",
        "Idle API connections closed to make room for a new one (api.max_connections were open).",
        "counter",
        srv.connections_evicted.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_connection_errors_total",
        "API connections ended by an error: a header timeout, a malformed request, a reset.",
        "counter",
        srv.connection_errors.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_tls_failures_total",
        "API TLS handshakes that failed or timed out (no or an unknown client certificate, plain HTTP).",
        "counter",
        srv.tls_failures.load(Ordering::Relaxed),
    );
    counter(
        "deflect_telemetry_targets_refused_total",
        "Addresses and prefix rollups in reports that their node may not report on (its token's serves): dropped.",
        "counter",
        s.metrics.telemetry_refused_targets.load(Ordering::Relaxed),
    );
    counter(
        "deflect_telemetry_reports_busy_total",
        "Reports refused (429) because their node's previous report was still being judged.",
        "counter",
        s.metrics.telemetry_busy.load(Ordering::Relaxed),
    );
    counter(
        "deflect_telemetry_reports_over_budget_total",
        "Reports refused (429) because their node had spent its share of the engine's time (100 ms a second).",
        "counter",
        s.metrics.telemetry_over_budget.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_refusals_unaudited_total",
        "Refusals past the audit log's per-actor limit of 60 a minute: counted, not recorded.",
        "counter",
        m.refused_unaudited.load(Ordering::Relaxed),
    );
    counter(
        "deflect_store_pruned_audit_entries_total",
        "Audit entries removed by retention (each prune is itself an audit.prune entry).",
        "counter",
        m.pruned_audit.load(Ordering::Relaxed),
    );
    counter(
        "deflect_store_pruned_mitigations_total",
        "Withdrawn mitigations removed from the store by retention.",
        "counter",
        m.pruned_mitigations.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_withdrawn_total",
        "Mitigations withdrawn by hand.",
        "counter",
        m.withdrawn.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_expired_total",
        "Mitigations withdrawn at expiry.",
        "counter",
        m.expired.load(Ordering::Relaxed),
    );
    counter(
        "deflect_announces_total",
        "Routes given to peers.",
        "counter",
        m.announces.load(Ordering::Relaxed),
    );
    counter(
        "deflect_withdraws_total",
        "Routes taken from peers.",
        "counter",
        m.withdraws.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_requests_total",
        "API requests.",
        "counter",
        s.metrics.requests.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_errors_total",
        "API requests answered with an error.",
        "counter",
        s.metrics.errors.load(Ordering::Relaxed),
    );
    let e = &s.engine.metrics;
    counter(
        "deflect_telemetry_reports_total",
        "Probe reports judged.",
        "counter",
        e.reports.load(Ordering::Relaxed),
    );
    counter(
        "deflect_attacks_started_total",
        "Attacks detected.",
        "counter",
        e.attacks_started.load(Ordering::Relaxed),
    );
    counter(
        "deflect_attacks_active",
        "Attacks under way.",
        "gauge",
        e.attacks_active.load(Ordering::Relaxed),
    );
    counter(
        "deflect_attacks_returned_total",
        "Attacks that came back during their hold-down or probation (reopened, not counted again as detected).",
        "counter",
        e.attacks_returned.load(Ordering::Relaxed),
    );
    counter(
        "deflect_flash_crowds_total",
        "Intervals whose SYNs above the threshold were a flash crowd (handshakes completed, no source standing out): no attack.",
        "counter",
        e.flash_crowds.load(Ordering::Relaxed),
    );
    counter(
        "deflect_attacks_over_total",
        "Attacks over: no return within their policy's probation after the withdrawal.",
        "counter",
        e.attacks_closed.load(Ordering::Relaxed),
    );
    counter(
        "deflect_targets",
        "Protected addresses with learned baselines.",
        "gauge",
        e.targets.load(Ordering::Relaxed),
    );
    counter(
        "deflect_targets_over_limit_total",
        "New addresses not tracked: the table is full (detection.max_targets).",
        "counter",
        e.targets_over_limit.load(Ordering::Relaxed),
    );
    counter(
        "deflect_targets_over_node_limit_total",
        "New addresses not tracked: their node reached detection.max_targets_per_node.",
        "counter",
        e.targets_over_node_limit.load(Ordering::Relaxed),
    );
    counter(
        "deflect_targets_evicted_total",
        "Addresses forgotten after detection.target_idle without a report.",
        "counter",
        e.targets_evicted.load(Ordering::Relaxed),
    );
    counter(
        "deflect_prefixes",
        "Protected prefixes with learned baselines (prefix-level detection: carpet bombing).",
        "gauge",
        e.prefixes.load(Ordering::Relaxed),
    );
    counter(
        "deflect_prefixes_over_limit_total",
        "New prefixes not tracked: the table is full (detection.max_prefixes).",
        "counter",
        e.prefixes_over_limit.load(Ordering::Relaxed),
    );
    counter(
        "deflect_targets_covered_by_prefix_total",
        "Address intervals above a threshold that started no attack: their prefix's attack in the class covers them.",
        "counter",
        e.covered_by_prefix.load(Ordering::Relaxed),
    );
    counter(
        "deflect_nodes_stale",
        "Nodes that stopped reporting.",
        "gauge",
        e.nodes_stale.load(Ordering::Relaxed),
    );
    counter(
        "deflect_baselines_saved_total",
        "Snapshots of the learned baselines written (every minute and at shutdown, state_dir/baselines.bin).",
        "counter",
        e.baselines_saved.load(Ordering::Relaxed),
    );
    counter(
        "deflect_baselines_save_errors_total",
        "Snapshots of the learned baselines that could not be written.",
        "counter",
        e.baselines_save_errors.load(Ordering::Relaxed),
    );
    counter(
        "deflect_baselines_snapshot_bytes",
        "Size of the last snapshot of the learned baselines.",
        "gauge",
        e.baselines_bytes.load(Ordering::Relaxed),
    );
    counter(
        "deflect_baselines_restored",
        "Addresses and prefixes whose learned baselines were read back at start.",
        "gauge",
        e.baselines_restored.load(Ordering::Relaxed),
    );
    counter(
        "deflect_baselines_unreadable_total",
        "Snapshots of the learned baselines found unreadable at start (set aside as baselines.bin.bad; detection started cold).",
        "counter",
        e.baselines_unreadable.load(Ordering::Relaxed),
    );
    counter(
        "deflect_policy_steps_total",
        "Policy steps fired.",
        "counter",
        e.policy_steps.load(Ordering::Relaxed),
    );
    counter(
        "deflect_policy_reload_errors_total",
        "Policy directory changes refused.",
        "counter",
        e.policy_reload_errors.load(Ordering::Relaxed),
    );
    let al = &s.alerts.metrics;
    counter(
        "deflect_alerts_delivered_total",
        "Alerts delivered.",
        "counter",
        al.delivered.load(Ordering::Relaxed),
    );
    counter(
        "deflect_alerts_failed_total",
        "Alerts that could not be delivered after every attempt.",
        "counter",
        al.failed.load(Ordering::Relaxed),
    );
    counter(
        "deflect_alerts_dropped_total",
        "Alerts dropped: the queue was full.",
        "counter",
        al.dropped.load(Ordering::Relaxed),
    );
    let pc = &s.recorder.metrics;
    counter(
        "deflect_pcap_frames_written_total",
        "Sampled packets written to attack captures.",
        "counter",
        pc.frames_written.load(Ordering::Relaxed),
    );
    counter(
        "deflect_pcap_frames_dropped_total",
        "Sampled packets not captured: the recorder was behind.",
        "counter",
        pc.frames_dropped.load(Ordering::Relaxed),
    );
    if let Some(st) = s
        .sflow
        .as_ref()
        .and_then(|st| st.lock().ok().map(|g| g.clone()))
    {
        counter(
            "deflect_sflow_untrusted_datagrams_total",
            "sFlow datagrams from addresses that are not trusted agents.",
            "counter",
            st.untrusted,
        );
        for (name, help, v) in socket_counters("sflow", "sFlow", &st.socket) {
            counter(&name, &help, "counter", v);
        }
        for (name, help, get) in [
            (
                "deflect_sflow_datagrams_total",
                "sFlow datagrams received per agent.",
                (|a: &crate::collector::AgentStats| a.datagrams)
                    as fn(&crate::collector::AgentStats) -> u64,
            ),
            (
                "deflect_sflow_lost_datagrams_total",
                "sFlow datagrams missing from an agent's sequence.",
                |a| a.lost,
            ),
            (
                "deflect_sflow_agent_restarts_total",
                "sFlow agent restarts seen.",
                |a| a.restarts,
            ),
            (
                "deflect_sflow_decode_errors_total",
                "sFlow datagrams that did not decode.",
                |a| a.decode_errors,
            ),
            (
                "deflect_sflow_flow_samples_total",
                "sFlow flow samples received.",
                |a| a.flow_samples,
            ),
            (
                "deflect_sflow_samples_refused_total",
                "sFlow flow samples dropped: their sampling rate was above the agent's max_sampling_rate.",
                |a| a.samples_refused,
            ),
            (
                "deflect_sflow_intervals_refused_total",
                "sFlow intervals refused: estimated above the agent's max_pps.",
                |a| a.intervals_refused,
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for a in &st.agents {
                out.push_str(&format!(
                    "{name}{{agent=\"{}\"}} {}\n",
                    label(&a.name),
                    get(a)
                ));
            }
        }
    }
    if let Some(st) = s
        .netflow
        .as_ref()
        .and_then(|st| st.lock().ok().map(|g| g.clone()))
    {
        netflow(&mut out, &st);
    }
    out.push_str(
        "# HELP deflect_mitigations_active_by_kind Mitigations active now, by kind.\n\
         # TYPE deflect_mitigations_active_by_kind gauge\n",
    );
    for (k, n) in crate::route::Kind::ALL.iter().zip(&m.active_by_kind) {
        let _ = writeln!(
            out,
            "deflect_mitigations_active_by_kind{{kind=\"{}\"}} {}",
            k.name(),
            n.load(Ordering::Relaxed)
        );
    }
    traffic(&mut out, &seen);
    let peers = s.peers.read().map(|p| p.clone()).unwrap_or_default();
    out.push_str("# HELP deflect_peer_up Whether the BGP session is established.\n# TYPE deflect_peer_up gauge\n");
    for p in &peers {
        let up = u8::from(p.status().state == deflect_bgp::fsm::State::Established);
        out.push_str(&format!(
            "deflect_peer_up{{peer=\"{}\"}} {up}\n",
            label(&p.config().name)
        ));
    }
    out.push_str("# HELP deflect_peer_routes Routes advertised to the peer.\n# TYPE deflect_peer_routes gauge\n");
    for p in &peers {
        out.push_str(&format!(
            "deflect_peer_routes{{peer=\"{}\"}} {}\n",
            label(&p.config().name),
            p.status().advertised
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The NetFlow/IPFIX collector's counters, per exporter.
fn netflow(out: &mut String, st: &crate::collector::netflow::CollectorStats) {
    use crate::collector::netflow::ExporterStats;
    let untrusted = (
        "deflect_netflow_untrusted_datagrams_total".to_string(),
        "NetFlow/IPFIX datagrams from addresses that are not trusted exporters.".to_string(),
        st.untrusted,
    );
    for (name, help, v) in
        std::iter::once(untrusted).chain(socket_counters("netflow", "NetFlow/IPFIX", &st.socket))
    {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    type Get = fn(&ExporterStats) -> u64;
    let per_exporter: [(&str, &str, &str, Get); 11] = [
        (
            "deflect_netflow_datagrams_total",
            "NetFlow/IPFIX datagrams received per exporter.",
            "counter",
            |e| e.datagrams,
        ),
        (
            "deflect_netflow_records_total",
            "Flow records read per exporter.",
            "counter",
            |e| e.records,
        ),
        (
            "deflect_netflow_decode_errors_total",
            "NetFlow/IPFIX datagrams (or sets) that did not decode.",
            "counter",
            |e| e.decode_errors,
        ),
        (
            "deflect_netflow_lost_total",
            "Missing from an exporter's sequence (v5: flows; v9: datagrams; IPFIX: records).",
            "counter",
            |e| e.lost,
        ),
        (
            "deflect_netflow_records_refused_total",
            "Flow records dropped: their sampling rate was above the exporter's max_sampling_rate.",
            "counter",
            |e| e.records_refused,
        ),
        (
            "deflect_netflow_intervals_refused_total",
            "NetFlow/IPFIX intervals refused: estimated above the exporter's max_pps.",
            "counter",
            |e| e.intervals_refused,
        ),
        (
            "deflect_netflow_late_packets_total",
            "Packets (as estimated) that arrived for an interval already handed to detection.",
            "counter",
            |e| e.late_packets,
        ),
        (
            "deflect_netflow_sets_dropped_total",
            "Data sets dropped: their template never came in time, or no room to hold them.",
            "counter",
            |e| e.sets_dropped,
        ),
        (
            "deflect_netflow_templates_evicted_total",
            "Templates evicted: the exporter's template table was full.",
            "counter",
            |e| e.templates_evicted,
        ),
        (
            "deflect_netflow_delay_seconds",
            "How long after an interval its records are handed to detection.",
            "gauge",
            |e| e.delay_ms / 1000,
        ),
        (
            "deflect_netflow_templates",
            "Templates in force per exporter.",
            "gauge",
            |e| e.templates as u64,
        ),
    ];
    for (name, help, kind, get) in per_exporter {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for e in &st.exporters {
            out.push_str(&format!(
                "{name}{{exporter=\"{}\"}} {}\n",
                label(&e.name),
                get(e)
            ));
        }
    }
}

/// A datagram collector's socket counters, named `deflect_<protocol>_socket_drops_total` and
/// `deflect_<protocol>_truncated_datagrams_total` (`protocol` as in the metric names, `label` as
/// in prose).
fn socket_counters(
    protocol: &str,
    label: &str,
    s: &crate::collector::SocketStats,
) -> [(String, String, u64); 2] {
    [
        (
            format!("deflect_{protocol}_socket_drops_total"),
            format!("{label} datagrams the kernel dropped on the collector's full socket queue."),
            s.drops,
        ),
        (
            format!("deflect_{protocol}_truncated_datagrams_total"),
            format!("{label} datagrams longer than the collector's receive slot: dropped."),
            s.truncated,
        ),
    ]
}
