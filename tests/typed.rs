//! Typed (serde) channels and endpoints across real processes, on tokio and on async-io.
#![cfg(feature = "serde")]

mod common;

use std::time::Duration;

use common::{EndpointNames, ShmName, read_report, report, reports, run, spawn};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use shmchan::channel::{Mpmc, Mpsc, Producer, Spsc};
use shmchan::endpoint::Side;
use shmchan::typed::{TypedConsumer, TypedEndpoint, TypedProducer};
use shmchan::{Error, Options};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    producer: u32,
    seq: u64,
    item: String,
    tags: Vec<u16>,
    note: Option<String>,
}

/// Order `seq` of `producer`: its size varies, so that messages of many lengths cross.
fn order(producer: u32, seq: u64) -> Order {
    Order {
        producer,
        seq,
        item: format!("item-{}", "x".repeat((seq % 40) as usize)),
        tags: (0..(seq % 7) as u16).collect(),
        note: (seq % 3 == 0).then(|| format!("note {seq}")),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Request {
    Add(i64, i64),
    Upper(String),
    Quit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Response {
    Sum(i64),
    Text(String),
    Bye { served: u64 },
}

fn opts() -> Options {
    common::opts(256, 8, None)
}

/// The server side of the typed service: answers until the client says Quit or leaves.
async fn serve(mut ep: TypedEndpoint<Response, Request>) -> u64 {
    let mut served = 0;
    loop {
        match ep.recv().await {
            Ok(Request::Add(a, b)) => ep.send(&Response::Sum(a + b)).await.unwrap(),
            Ok(Request::Upper(s)) => ep.send(&Response::Text(s.to_uppercase())).await.unwrap(),
            Ok(Request::Quit) => {
                ep.send(&Response::Bye { served }).await.unwrap();
                return served;
            }
            Err(Error::Closed) => return served,
            Err(e) => panic!("server: {e}"),
        }
        served += 1;
    }
}

/// The client side: `n` requests of both kinds, every reply checked; then Quit.
async fn client(mut ep: TypedEndpoint<Request, Response>, n: i64) {
    for i in 0..n {
        if i % 2 == 0 {
            ep.send(&Request::Add(i, 1000)).await.unwrap();
            assert_eq!(ep.recv().await.unwrap(), Response::Sum(i + 1000));
        } else {
            ep.send(&Request::Upper(format!("req {i}"))).await.unwrap();
            assert_eq!(ep.recv().await.unwrap(), Response::Text(format!("REQ {i}")));
        }
    }
    // The Sink and Stream of the whole endpoint, without split.
    ep.feed(Request::Quit).await.unwrap();
    ep.flush().await.unwrap();
    let bye = ep.next().await.unwrap().unwrap();
    assert_eq!(bye, Response::Bye { served: n as u64 });
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        let rt = args[1].as_str();
        match role {
            // Sends orders 0..count of producer `id` on an SPSC/MPSC/MPMC channel: half with
            // `send`, half through the Sink.
            "producer" => {
                let flavour = args[2].as_str();
                let id: u32 = args[3].parse().unwrap();
                let count: u64 = args[4].parse().unwrap();
                let gate = args.get(5).is_some_and(|a| a == "gate");
                run(rt, async {
                    match flavour {
                        "spsc" => produce::<Spsc>(name, id, count, gate).await,
                        "mpsc" => produce::<Mpsc>(name, id, count, gate).await,
                        other => panic!("flavour {other}"),
                    }
                });
                report("sent");
            }
            // Receives orders from an MPMC channel until it closes; reports count and checksum.
            "mpmc-consumer" => {
                let (n, sum) = run(rt, async {
                    let mut rx = TypedConsumer::<Mpmc, Order>::open(name, opts()).unwrap();
                    report("attached");
                    let (mut n, mut sum) = (0u64, 0u64);
                    while let Some(o) = rx.next().await {
                        let o = o.unwrap();
                        assert_eq!(o, order(o.producer, o.seq));
                        n += 1;
                        sum += o.seq;
                    }
                    (n, sum)
                });
                report(format!("{n} {sum}"));
            }
            // A raw-bytes producer that sends garbage, then one valid order.
            "garbage" => {
                let mut tx = Producer::<Spsc>::open(name, opts()).unwrap();
                tx.send_blocking([0xffu8; 11]).unwrap(); // an overlong varint
                tx.send_blocking([]).unwrap(); // nothing at all
                tx.send_blocking(postcard_like_order_with_huge_len())
                    .unwrap();
                let valid = postcard::to_allocvec(&order(9, 9)).unwrap();
                tx.send_blocking(&valid).unwrap();
                report("sent");
            }
            // A typed endpoint by name, side B: the client of the service.
            "named-client" => {
                run(rt, async {
                    let ep =
                        TypedEndpoint::<Request, Response>::open(name, Side::B, opts()).unwrap();
                    client(ep, 50).await;
                });
                report("done");
            }
            // A typed service behind a Listener, serving one client.
            "listener-server" => {
                let served = run(rt, async {
                    let mut l = shmchan::endpoint::Listener::bind(name, opts()).unwrap();
                    report("listening");
                    let ep = TypedEndpoint::<Response, Request>::accept(&mut l)
                        .await
                        .unwrap();
                    serve(ep).await
                });
                report(format!("served {served}"));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Bytes shaped like an order whose item string claims 2^31 bytes.
fn postcard_like_order_with_huge_len() -> Vec<u8> {
    vec![1, 2, 0x80, 0x80, 0x80, 0x80, 0x08, b'a']
}

async fn produce<F: shmchan::channel::Flavour>(name: &str, id: u32, count: u64, gate: bool) {
    let mut tx = TypedProducer::<F, Order>::open(name, opts()).unwrap();
    if gate {
        // Attached; start only once every producer is (else the first to finish could be
        // the last producer attached, which closes the channel for the others).
        report("attached");
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    let half = count / 2;
    for seq in 0..half {
        tx.send(&order(id, seq)).await.unwrap();
    }
    let mut rest = futures::stream::iter((half..count).map(|seq| Ok(order(id, seq))));
    tx.send_all(&mut rest).await.unwrap();
    tx.close().await.unwrap();
}

fn spsc_across_processes(rt: &str) {
    let name = ShmName::new("typed-spsc");
    let count = 500u64;
    let mut rx = TypedConsumer::<Spsc, Order>::create(name.as_str(), opts()).unwrap();
    let child = spawn(
        "producer",
        &[name.as_str(), rt, "spsc", "3", &count.to_string()],
    );
    let got: Vec<Order> = run(rt, async {
        let mut got = Vec::new();
        while let Some(o) = rx.next().await {
            got.push(o.unwrap());
        }
        got
    });
    assert_eq!(reports(&child.wait_ok()), ["sent"]);
    let want: Vec<Order> = (0..count).map(|s| order(3, s)).collect();
    assert_eq!(got, want);
}

#[test]
fn spsc_typed_across_processes_tokio() {
    spsc_across_processes("tokio");
}

#[cfg(feature = "async-io")]
#[test]
fn spsc_typed_across_processes_async_io() {
    spsc_across_processes("async-io");
}

fn mpsc_across_processes(rt: &str) {
    let name = ShmName::new("typed-mpsc");
    let count = 300u64;
    let mut rx = TypedConsumer::<Mpsc, Order>::create(name.as_str(), opts()).unwrap();
    let mut children: Vec<_> = (1..=3u32)
        .map(|id| {
            common::spawn_holding(
                "producer",
                &[
                    name.as_str(),
                    rt,
                    "mpsc",
                    &id.to_string(),
                    &count.to_string(),
                    "gate",
                ],
            )
        })
        .collect();
    for c in &mut children {
        assert_eq!(read_report(c), "attached");
    }
    for c in &mut children {
        drop(c.0.as_mut().unwrap().stdin.take()); // go
    }
    let mut next = [0u64; 4];
    run(rt, async {
        while let Some(o) = rx.next().await {
            let o = o.unwrap();
            let p = o.producer as usize;
            assert_eq!(o, order(o.producer, next[p]), "per-producer order");
            next[p] += 1;
        }
    });
    for c in children {
        assert_eq!(reports(&c.wait_ok()), ["sent"]);
    }
    assert_eq!(next[1..], [count; 3]);
}

#[test]
fn mpsc_typed_three_producer_processes_tokio() {
    mpsc_across_processes("tokio");
}

#[cfg(feature = "async-io")]
#[test]
fn mpsc_typed_three_producer_processes_async_io() {
    mpsc_across_processes("async-io");
}

fn mpmc_across_processes(rt: &str) {
    let name = ShmName::new("typed-mpmc");
    let count = 400u64;
    let mut tx = TypedProducer::<Mpmc, Order>::create(name.as_str(), opts()).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| common::spawn("mpmc-consumer", &[name.as_str(), rt]))
        .collect();
    for c in &mut children {
        assert_eq!(read_report(c), "attached");
    }
    run(rt, async {
        for seq in 0..count {
            tx.send(&order(0, seq)).await.unwrap();
        }
    });
    drop(tx);
    let (mut n, mut sum) = (0, 0);
    for c in children {
        let out = c.wait_ok();
        let line = reports(&out).pop().unwrap();
        let (a, b) = line.split_once(' ').unwrap();
        n += a.parse::<u64>().unwrap();
        sum += b.parse::<u64>().unwrap();
    }
    assert_eq!((n, sum), (count, count * (count - 1) / 2));
}

#[test]
fn mpmc_typed_two_consumer_processes_tokio() {
    mpmc_across_processes("tokio");
}

#[cfg(feature = "async-io")]
#[test]
fn mpmc_typed_two_consumer_processes_async_io() {
    mpmc_across_processes("async-io");
}

fn named_endpoint_across_processes(rt: &str) {
    let name = EndpointNames::new("typed-ep");
    let ep = TypedEndpoint::<Response, Request>::create(name.as_str(), Side::A, opts()).unwrap();
    let child = spawn("named-client", &[name.as_str(), rt]);
    let served = run(rt, serve(ep));
    assert_eq!(reports(&child.wait_ok()), ["done"]);
    assert_eq!(served, 50);
}

#[test]
fn typed_endpoint_by_name_across_processes_tokio() {
    named_endpoint_across_processes("tokio");
}

#[cfg(feature = "async-io")]
#[test]
fn typed_endpoint_by_name_across_processes_async_io() {
    named_endpoint_across_processes("async-io");
}

fn listener_across_processes(rt: &str) {
    let name = format!("/shmchan-t-typed-listen-{rt}-{}", std::process::id());
    let mut server = spawn("listener-server", &[&name, rt]);
    assert_eq!(read_report(&mut server), "listening");
    run(rt, async {
        let ep = TypedEndpoint::<Request, Response>::connect(&name)
            .await
            .unwrap();
        client(ep, 40).await;
    });
    assert_eq!(reports(&server.wait_ok()), ["served 40"]);
}

#[test]
fn typed_endpoint_over_listener_and_connect_tokio() {
    listener_across_processes("tokio");
}

#[cfg(feature = "async-io")]
#[test]
fn typed_endpoint_over_listener_and_connect_async_io() {
    listener_across_processes("async-io");
}

/// A raw-bytes producer in another process sends garbage: the typed consumer gets
/// `Corrupt` naming the channel for each bad message, never a panic, and the valid message
/// behind them still decodes.
#[test]
fn garbage_from_a_raw_producer_is_corrupt() {
    let name = ShmName::new("typed-garbage");
    let mut rx = TypedConsumer::<Spsc, Order>::create(name.as_str(), opts()).unwrap();
    let child = spawn("garbage", &[name.as_str(), "tokio"]);
    assert_eq!(reports(&child.wait_ok()), ["sent"]);
    for _ in 0..3 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Err(Error::Corrupt(m)) => {
                assert!(m.contains(name.as_str()), "{m}");
                assert!(m.contains("does not decode"), "{m}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        order(9, 9)
    );
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Closed)
    ));
}

/// The typed stream yields `Corrupt` once and then ends, as the byte stream does for errors.
#[test]
fn typed_stream_ends_after_corrupt() {
    let name = ShmName::new("typed-stream-corrupt");
    let mut raw = Producer::<Spsc>::create(name.as_str(), opts()).unwrap();
    let mut rx = TypedConsumer::<Spsc, Order>::open(name.as_str(), opts()).unwrap();
    raw.try_send([0xffu8; 11]).unwrap();
    run("tokio", async {
        assert!(matches!(rx.next().await, Some(Err(Error::Corrupt(_)))));
        assert!(rx.next().await.is_none());
    });
}
