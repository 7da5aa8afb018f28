//! Encoding 100k FlowSpec rules into UPDATE messages, and decoding them.
//!
//! `cargo bench -p deflect-bgp --bench codec` prints criterion's timings and, per benchmark, the
//! derived rate in NLRI per second (the goal: at least 10 million NLRI encoded per second on
//! one core).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deflect_bgp::codec::CodecCtx;
use deflect_bgp::community::ExtCommunity;
use deflect_bgp::flowspec::{Action, Rule, decode_nlri_list};
use deflect_bgp::iana::{Afi, Family};
use deflect_bgp::message::Message;
use deflect_bgp::rib::{AdjRibOut, RouteAttrs, RouteKey, SessionCtx, pack_announcements};

const RULES: usize = 100_000;

fn rules() -> Vec<Rule> {
    (0..RULES)
        .map(|i| {
            let text = format!(
                "dst 10.{}.{}.{}/32 proto udp sport {} pkt-len >=512",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff,
                [53, 123, 1900, 11211][i % 4]
            );
            text.parse::<Rule>().expect("valid rule")
        })
        .collect()
}

fn ctx(extended: bool) -> SessionCtx {
    SessionCtx {
        local_as: 65000,
        ebgp: true,
        codec: CodecCtx {
            four_octet_as: true,
            extended_message: extended,
        },
        families: Family::ALL.into_iter().collect(),
        max_flowspec_nlri_len: 239,
    }
}

fn discard_attrs() -> Arc<RouteAttrs> {
    let discard: ExtCommunity = Action::DISCARD.to_ext_community();
    Arc::new(RouteAttrs {
        ext_communities: vec![discard],
        ..RouteAttrs::default()
    })
}

fn loaded_rib(rules: &[Rule]) -> AdjRibOut {
    let attrs = discard_attrs();
    let mut rib = AdjRibOut::new();
    for r in rules {
        rib.set(RouteKey::FlowSpec(r.clone()), attrs.clone())
            .expect("valid route");
    }
    rib
}

/// Encodes the whole table; returns the bytes and the number of messages.
fn encode_all(rib: &mut AdjRibOut, extended: bool) -> (BytesMut, usize) {
    rib.session_up(ctx(extended));
    let mut out = BytesMut::with_capacity(RULES * 32);
    let mut n = 0;
    loop {
        let w = rib.drain(&mut out, usize::MAX);
        if w == 0 {
            break;
        }
        n += w;
    }
    (out, n)
}

fn split_messages(mut buf: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    while buf.len() >= 19 {
        let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        v.push(&buf[..len]);
        buf = &buf[len..];
    }
    v
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let mut g = c.benchmark_group("flowspec_100k");
    g.throughput(Throughput::Elements(RULES as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(5));

    // The codec: 100k rules sharing one action packed into UPDATE messages.
    let keys: Vec<RouteKey> = rules.iter().cloned().map(RouteKey::FlowSpec).collect();
    let attrs = discard_attrs();
    for extended in [false, true] {
        let name = if extended {
            "pack_updates_65535"
        } else {
            "pack_updates_4096"
        };
        let c = ctx(extended);
        let mut out = BytesMut::with_capacity(RULES * 32);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(pack_announcements(
                    &c,
                    Family::Ipv4FlowSpec,
                    &attrs,
                    &keys,
                    &mut out,
                    |_| {},
                ))
            })
        });
    }
    // The whole Adj-RIB-Out: session up, every route pending, drained into UPDATEs, bookkeeping included.
    for extended in [false, true] {
        let name = if extended {
            "adj_rib_out_sync_65535"
        } else {
            "adj_rib_out_sync_4096"
        };
        let mut rib = loaded_rib(&rules);
        g.bench_function(name, |b| {
            b.iter(|| black_box(encode_all(&mut rib, extended)))
        });
    }

    let mut rib = loaded_rib(&rules);
    let (wire, messages) = encode_all(&mut rib, false);
    let frames = split_messages(&wire);
    assert_eq!(frames.len(), messages);
    let codec = CodecCtx {
        four_octet_as: true,
        extended_message: false,
    };
    g.bench_function("decode_updates_4096", |b| {
        b.iter(|| {
            let mut nlri = 0;
            for f in &frames {
                if let Ok(Message::Update(u)) = Message::decode(&codec, f) {
                    nlri += u.attributes.mp_reach.as_ref().map_or(0, |m| m.nlri.len());
                }
            }
            black_box(nlri)
        })
    });

    let nlri_bytes: Vec<u8> = rules
        .iter()
        .flat_map(|r| r.wire().iter().copied())
        .collect();
    g.bench_function("decode_nlri_only", |b| {
        b.iter(|| black_box(decode_nlri_list(Afi::Ipv4, &nlri_bytes).map(|v| v.len())))
    });
    g.finish();

    // Plain figures, so the rates read without arithmetic.
    let rate = |f: &mut dyn FnMut()| {
        let rounds = 20;
        let t = Instant::now();
        for _ in 0..rounds {
            f();
        }
        (RULES * rounds) as f64 / t.elapsed().as_secs_f64() / 1e6
    };
    let c = ctx(false);
    let mut out = BytesMut::with_capacity(RULES * 32);
    let pack = rate(&mut || {
        out.clear();
        black_box(pack_announcements(
            &c,
            Family::Ipv4FlowSpec,
            &attrs,
            &keys,
            &mut out,
            |_| {},
        ));
    });
    let mut rib = loaded_rib(&rules);
    let sync = rate(&mut || {
        black_box(encode_all(&mut rib, false));
    });
    let decode = rate(&mut || {
        for f in &frames {
            black_box(Message::decode(&codec, f).is_ok());
        }
    });
    eprintln!(
        "summary: {RULES} FlowSpec rules, {messages} UPDATEs of at most 4096 octets ({} octets): \
         packed {pack:.1} M NLRI/s; Adj-RIB-Out sync {sync:.1} M NLRI/s; decoded {decode:.1} M NLRI/s",
        wire.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
