//! The Zenoh bridge across real processes, on loopback only: every session is in peer mode with
//! multicast and gossip scouting off (`bridge::peer_config`), one listening on
//! `tcp/127.0.0.1:<free port>` and the other connecting to it.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, ShmName};
use shmchan::bridge::{self, Ended, zenoh};
use shmchan::endpoint::{Endpoint, Side};
use shmchan::{Error, Options, mpsc};
use zenoh::Wait;

/// Messages in the in-order test.
const MESSAGES: u64 = 100_000;
/// Largest message of the in-order test.
const MAX_LEN: usize = 200;
/// How soon a death must be reported to the local sides.
const DEATH_BOUND: Duration = Duration::from_secs(5);

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "export" => export_role(args),
        "import" => import_role(args),
        "service" => service_role(args),
        other => panic!("unknown role {other}"),
    });
}

/// A loopback TCP port free now (the OS picks it; the listener is closed before the child binds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn opts() -> Options {
    Options::new().liveness_interval(Duration::from_millis(50))
}

fn open_session(listen: &str, connect: &str) -> zenoh::Session {
    let l: Vec<&str> = [listen].into_iter().filter(|s| !s.is_empty()).collect();
    let c: Vec<&str> = [connect].into_iter().filter(|s| !s.is_empty()).collect();
    let config = bridge::peer_config(&l, &c).unwrap();
    assert_eq!(
        config.get_json("scouting/multicast/enabled").unwrap(),
        "false"
    );
    assert_eq!(config.get_json("scouting/gossip/enabled").unwrap(), "false");
    zenoh::open(config).wait().unwrap()
}

/// args: channel name, key, listen endpoint, connect endpoint. A local producer sends
/// `MESSAGES` messages into an MPSC channel, which the exporter drains into Zenoh.
fn export_role(args: &[String]) {
    let (name, key) = (&args[0], &args[1]);
    let session = open_session(&args[2], &args[3]);
    let consumer = mpsc::Consumer::create(name, opts()).unwrap();
    let mut producer = mpsc::Producer::open(name, opts()).unwrap();
    let exporter = bridge::export(consumer, &session, key).unwrap();
    common::report("ready");
    for i in 0..MESSAGES {
        producer
            .send_blocking(common::message(1, i, MAX_LEN))
            .unwrap();
    }
    drop(producer); // the clean end: the exporter forwards what is queued, then says so
    let ended = exporter.join().unwrap();
    common::report(format!("export {ended:?}"));
}

/// args: channel name, key, listen endpoint, connect endpoint. The importer sends what arrives
/// into an MPSC channel; the local consumer checks every message and the order.
fn import_role(args: &[String]) {
    let (name, key) = (&args[0], &args[1]);
    let session = open_session(&args[2], &args[3]);
    let mut consumer = mpsc::Consumer::create(name, opts()).unwrap();
    let producer = mpsc::Producer::open(name, opts()).unwrap();
    let importer = bridge::import(&session, key, producer).unwrap();
    common::report("ready");
    let mut next = 0u64;
    let end = loop {
        match consumer.recv_timeout(Duration::from_secs(60)) {
            Ok(msg) => {
                let (stream, i) = common::check_message(&msg, MAX_LEN);
                assert_eq!((stream, i), (1, next), "out of order");
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(end, Error::Closed), "the stream ended with {end}");
    let stats = importer.stats();
    let ended = importer.join().unwrap();
    common::report(format!(
        "import {next} {ended:?} {} {}",
        stats.forwarded, stats.dropped
    ));
}

/// args: endpoint name, key, listen endpoint. A local service answers each request on an
/// endpoint with "re:" + request; `bridge::serve` answers Zenoh queries with it. Runs until
/// stdin closes.
fn service_role(args: &[String]) {
    let (name, key) = (&args[0], &args[1]);
    let session = open_session(&args[2], "");
    let mut service = Endpoint::create(name, Side::A, opts()).unwrap();
    let client = Endpoint::open(name, Side::B, opts()).unwrap();
    let server = bridge::serve(&session, key, client).unwrap();
    let local = std::thread::spawn(move || {
        let mut served = 0u64;
        while let Ok(req) = service.recv_blocking() {
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&req);
            if service.send_blocking(reply).is_err() {
                break;
            }
            served += 1;
        }
        served
    });
    common::report("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let stats = server.stats();
    assert_eq!(server.stop().unwrap(), Ended::Stopped);
    let served = local.join().unwrap();
    common::report(format!("served {served} {}", stats.forwarded));
}

fn wait_ready(child: &mut ChildGuard) {
    assert_eq!(common::read_report(child), "ready");
}

fn last_report(out: &std::process::Output) -> String {
    common::reports(out).pop().unwrap_or_else(|| {
        panic!(
            "no report:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn unique_key(tag: &str) -> String {
    format!(
        "shmchan-test/{tag}/{}/{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// Local producer -> shm channel -> export -> Zenoh -> import -> shm channel -> consumer, in two
/// processes with a session each: all messages arrive, in order, intact, and the clean close
/// travels as well.
#[test]
fn hundred_thousand_messages_in_order_across_processes() {
    let (a, b) = (ShmName::new("zb-out"), ShmName::new("zb-in"));
    let key = unique_key("orders");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut exporter = common::spawn("export", &[a.as_str(), &key, &endpoint, ""]);
    wait_ready(&mut exporter);
    let mut importer = common::spawn("import", &[b.as_str(), &key, "", &endpoint]);
    wait_ready(&mut importer);
    let imported = last_report(&importer.wait_ok());
    let exported = last_report(&exporter.wait_ok());
    assert_eq!(exported, "export LocalClosed");
    assert_eq!(
        imported,
        format!("import {MESSAGES} RemoteClosed {MESSAGES} 0")
    );
    assert!(!a.exists() && !b.exists(), "a segment was left in /dev/shm");
}

/// A `shmchan bridge` process with `args`, whose first line (`ready`) has been read.
struct BridgeProcess {
    child: ChildGuard,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl BridgeProcess {
    fn start(args: &[&str]) -> BridgeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmchan"));
        cmd.arg("bridge")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(cmd);
        let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
        let mut stdout = std::io::BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the bridge did not start");
        BridgeProcess { child, stdout }
    }

    /// The rest of its stdout and its exit status, once it exited.
    fn finish(mut self) -> (String, std::process::ExitStatus) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        let out = self.child.wait();
        (rest, out.status)
    }
}

/// Which bridge process a kill test kills.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    Exporter,
    Importer,
}

/// The producer's send error: sends until one fails (the ring fills once nothing drains it),
/// within `DEATH_BOUND` of `since`.
fn send_until_error(producer: &mut mpsc::Producer, since: Instant) -> Error {
    loop {
        match producer.send_timeout(b"after", Duration::from_millis(100)) {
            Ok(()) | Err(shmchan::SendTimeoutError::Timeout(_)) => {}
            Err(shmchan::SendTimeoutError::Closed(_)) => return Error::Closed,
            Err(shmchan::SendTimeoutError::Other(_, e)) => return *e,
        }
        assert!(
            since.elapsed() < DEATH_BOUND,
            "no error seen by the producer"
        );
    }
}

/// The consumer's error after it drained what was in flight, within `DEATH_BOUND`.
fn recv_until_error(consumer: &mut mpsc::Consumer) -> Error {
    loop {
        match consumer.recv_timeout(DEATH_BOUND) {
            Ok(_) => {} // sent before the kill and still in flight
            Err(e) => return e,
        }
    }
}

/// Two `shmchan bridge` processes carry a channel from this process to this process through
/// Zenoh; one bridge is SIGKILLed. The local side attached to the killed bridge gets
/// `PeerGone`; the surviving bridge sees the remote vanish, exits non-zero saying so, and
/// closes its local channel, so that side gets `Closed`: both within `DEATH_BOUND`.
fn kill_a_bridge(which: Kill) {
    let (a, b) = (ShmName::new("zb-kill-out"), ShmName::new("zb-kill-in"));
    let key = unique_key("kill");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut producer = mpsc::Producer::create(a.as_str(), opts()).unwrap();
    let mut consumer = mpsc::Consumer::create(b.as_str(), opts()).unwrap();
    let export = format!("{}={key}", a.as_str());
    let import = format!("{key}={}", b.as_str());
    let b1 = BridgeProcess::start(&["--export", &export, "--listen", &endpoint]);
    let b2 = BridgeProcess::start(&["--import", &import, "--connect", &endpoint]);

    // The path works: messages go through both bridges.
    for i in 0..100u64 {
        producer.send_blocking(i.to_le_bytes()).unwrap();
    }
    for i in 0..100u64 {
        let msg = consumer.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(*msg, i.to_le_bytes());
    }

    let (killed, survivor) = match which {
        Kill::Exporter => (b1, b2),
        Kill::Importer => (b2, b1),
    };
    common::kill9(killed.child.id());
    let t = Instant::now();
    let (send_err, recv_err) = match which {
        // The producer's consumer (the bridge) is dead; the consumer's far bridge is gone.
        Kill::Exporter => {
            let s = send_until_error(&mut producer, t);
            (s, recv_until_error(&mut consumer))
        }
        Kill::Importer => {
            let r = recv_until_error(&mut consumer);
            (send_until_error(&mut producer, t), r)
        }
    };
    let took = t.elapsed();
    eprintln!("{which:?} killed: producer got {send_err}, consumer got {recv_err}, after {took:?}");
    assert!(took < DEATH_BOUND, "the deaths took {took:?} to be seen");
    match which {
        Kill::Exporter => {
            assert!(
                matches!(send_err, Error::PeerGone(_)),
                "producer got {send_err}"
            );
            assert!(matches!(recv_err, Error::Closed), "consumer got {recv_err}");
        }
        Kill::Importer => {
            assert!(matches!(send_err, Error::Closed), "producer got {send_err}");
            assert!(
                matches!(recv_err, Error::PeerGone(_)),
                "consumer got {recv_err}"
            );
        }
    }
    let (out, status) = survivor.finish();
    assert!(!status.success(), "the surviving bridge exited 0: {out}");
    assert!(
        out.contains("RemoteLost"),
        "the surviving bridge said: {out}"
    );
    drop(killed);
    drop((producer, consumer));
    // A channel with messages queued is not unlinked by its last participant; the guards
    // remove both, and nothing stays behind.
    drop((a, b));
    for pair in [&export, &import] {
        let name = pair.split('=').find(|s| s.starts_with('/')).unwrap();
        assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists());
    }
}

#[test]
fn killed_exporting_bridge_is_reported_to_both_local_sides() {
    kill_a_bridge(Kill::Exporter);
}

#[test]
fn killed_importing_bridge_is_reported_to_both_local_sides() {
    kill_a_bridge(Kill::Importer);
}

/// A local endpoint service in one process answers requests sent from another through Zenoh
/// queries; replies match requests one for one.
#[test]
fn request_response_across_processes() {
    let name = ShmName::new("zb-svc");
    let key = unique_key("echo");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut service = common::spawn_holding("service", &[name.as_str(), &key, &endpoint]);
    wait_ready(&mut service);

    let session = open_session("", &endpoint);
    let requester = bridge::Requester::new(&session, &key, Duration::from_secs(10)).unwrap();
    requester
        .wait_for_responder(Duration::from_secs(30))
        .unwrap();
    const N: u64 = 500;
    for i in 0..N {
        let req = format!("request {i}");
        let reply = requester.request_blocking(req.as_bytes()).unwrap();
        assert_eq!(&*reply, format!("re:{req}").as_bytes());
    }
    // Closing stdin stops the service process.
    drop(service.0.as_mut().unwrap().stdin.take());
    let out = service.wait_ok();
    assert_eq!(last_report(&out), format!("served {N} {N}"));
    // With the service gone, a request times out rather than hanging.
    let quick = bridge::Requester::new(&session, &key, Duration::from_millis(300)).unwrap();
    assert!(matches!(
        quick.request_blocking(b"anyone?"),
        Err(Error::TimedOut(_))
    ));
    session.close().wait().unwrap();
    assert!(!name.exists(), "a segment was left in /dev/shm");
}

/// `RemoteSink` and `RemoteStream` speak Zenoh directly: what the sink sends, the stream
/// yields in order, and the sink's close ends the stream.
#[test]
fn remote_sink_and_stream() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = unique_key("direct");
    let a = open_session(&endpoint, "");
    let b = open_session("", &endpoint);
    let mut stream = bridge::RemoteStream::new(&b, &key).unwrap();
    let sink = bridge::RemoteSink::new(&a, &key).unwrap();
    sink.wait_for_subscriber(Duration::from_secs(30)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use futures::{SinkExt, StreamExt};
        let mut sink = sink;
        for i in 0..1000u32 {
            sink.send(i.to_le_bytes()).await.unwrap();
        }
        SinkExt::<[u8; 4]>::close(&mut sink).await.unwrap();
        let mut n = 0u32;
        while let Some(msg) = stream.next().await {
            assert_eq!(*msg.unwrap(), n.to_le_bytes());
            n += 1;
        }
        assert_eq!(n, 1000);
    });
}

/// `shmchan bridge` refuses what it cannot run, before opening any session, with a message
/// that says why.
#[test]
fn bridge_command_refuses_bad_arguments() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shmchan"))
            .arg("bridge")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--export", "no-equals", "--listen", "tcp/127.0.0.1:9"]);
    assert!(err.contains("expected LEFT=RIGHT"), "{err}");
    let err = run(&["--export", "/x=svc/x"]);
    assert!(err.contains("no endpoint"), "{err}");
    let err = run(&["--listen", "tcp/127.0.0.1:9"]);
    assert!(err.contains("nothing to bridge"), "{err}");
}
