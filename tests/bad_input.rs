//! Bad input against a real cluster: random bytes, foreign and mismatched certificates,
//! damaged logs, oversized values. Each gets a clear error; the node keeps running, or
//! refuses to start naming the file and the fix; nothing acknowledged is lost.

mod support;

use baton_node::certs::{Credentials, Identity};
use baton_node::client::{Client, ClientError};
use baton_node::frame::{read_frame, write_frame, ErrorCode, Frame, ReadMode, PROTOCOL_VERSION};
use std::process::Command;
use std::time::Duration;
use support::Cluster;

const ELECTION: Duration = Duration::from_secs(10);

/// Goal: thousands of random datagrams at every node change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_to_the_port() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..3_000u32 {
        let length = 1 + (round as usize * 7919) % 1400;
        let datagram: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = socket.send_to(&datagram, cluster.addrs()[round as usize % 3]);
    }
    client.put(b"still", b"alive").await.unwrap();
    assert_eq!(client.get(b"still", ReadMode::Leader).await.unwrap().0, Some(b"alive".to_vec()));
}

/// Goal: a client whose certificate comes from another CA is refused; the cluster
/// serves everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    let elsewhere = tempfile::tempdir().unwrap();
    baton_node::certs::generate_cluster(elsewhere.path(), &["n1".into()]).unwrap();
    let mut stranger = Client::new(cluster.addrs(), elsewhere.path(), &Identity::Operator("operator".into())).unwrap();
    stranger.deadline = Duration::from_secs(2);
    let error = stranger.put(b"k", b"v").await.unwrap_err();
    assert!(matches!(error, ClientError::Deadline(..)), "{error}");
    println!("foreign client: {error}");
    client.put(b"k", b"from a member").await.unwrap();
    let logs = cluster.logs();
    assert!(logs.contains("TLS handshake failed"), "the refusal is logged");
    let refused: u64 = cluster.statuses(&mut client).await.iter().map(|s| s.handshakes_refused).sum();
    assert!(refused > 0, "and counted in status");
}

/// Goal: a holder of node n2's certificate that claims to be n3 is refused at the hello,
/// with the reason; the cluster is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_certificate_for_the_wrong_id() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    let credentials = Credentials::load(&cluster.certs, &Identity::Node("n2".into())).unwrap();
    let config = baton_node::tls::node_client_config(&credentials, &Default::default()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = endpoint.connect_with(config, cluster.addrs()[0], "n1.node.baton").unwrap().await.unwrap();
    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &Frame::Hello { protocol: PROTOCOL_VERSION, name: "n3".into(), incarnation: 1, cluster_id: 0 },
    )
    .await
    .unwrap();
    match read_frame(&mut receive).await.unwrap() {
        Some(Frame::HelloReply { accepted: false, reason, .. }) => {
            assert!(reason.contains("certificate names n2"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    client.put(b"after", b"impostor").await.unwrap();
    let refused: u64 = cluster.statuses(&mut client).await.iter().map(|s| s.hellos_refused).sum();
    assert_eq!(refused, 1, "the refusal is counted in status");
}

/// Goal: a value over the limit is refused with a clear, non-retryable error, and the
/// node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_value() {
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    let big = vec![b'x'; baton_node::frame::VALUE_BYTES_MAX + 1];
    match client.put(b"big", &big).await {
        Err(ClientError::Refused { code: ErrorCode::TooLarge, message }) => {
            assert!(message.contains("over the"), "{message}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    client.put(b"small", b"fine").await.unwrap();
}

fn last_segment(data_dir: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    segments.pop().expect("a log segment")
}

/// Goal: a torn write at the end of a follower's log (power cut mid-append) is cut on
/// restart; the node catches up and every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_repaired() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..50 {
        client.put(format!("k{i}").as_bytes(), b"v").await.unwrap();
    }
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id.clone();
    let addr = cluster.node(&follower).addr;
    // The quorum may have been the other follower: wait until this one holds the log.
    wait_until!(Duration::from_secs(10), { client.status_of(addr).await.ok().filter(|s| s.durable_index >= 51) })
        .expect("the follower stored everything");
    cluster.node(&follower).kill();
    let segment = last_segment(&cluster.node(&follower).data_dir);
    let length = std::fs::metadata(&segment).unwrap().len();
    // Half a record right after the last one (over the spare zeros the file is extended
    // with): a plausible header promising more bytes than were written.
    let records_end = std::fs::read(&segment).unwrap().iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[40, 0, 0, 0, 1, 2, 3, 4, 9, 9], records_end).unwrap();
    drop(file);
    cluster.node(&follower).start();
    for i in 50..60 {
        client.put(format!("k{i}").as_bytes(), b"v").await.unwrap();
    }
    let caught_up =
        wait_until!(Duration::from_secs(20), { client.status_of(addr).await.ok().filter(|s| s.applied_index >= 61) });
    if caught_up.is_none() {
        let statuses = cluster.statuses(&mut client).await;
        panic!("the follower did not recover: {statuses:#?}\n{}", cluster.logs());
    }
    assert!(std::fs::metadata(&segment).unwrap().len() >= length, "only the torn bytes were cut");
    assert!(cluster.logs().contains("cut the bytes after the log's last whole record"), "the repair is logged");
}

/// Goal: a corrupted record in the middle of a follower's log makes it refuse to start,
/// naming the file and the offset; the rest of the cluster keeps every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_mid_log_record_refuses_start() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..50 {
        client.put(format!("k{i}").as_bytes(), b"value").await.unwrap();
    }
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id.clone();
    let addr = cluster.node(&follower).addr;
    wait_until!(Duration::from_secs(10), { client.status_of(addr).await.ok().filter(|s| s.durable_index >= 51) })
        .expect("the follower stored everything");
    cluster.node(&follower).kill();
    let segment = last_segment(&cluster.node(&follower).data_dir);
    let mut bytes = std::fs::read(&segment).unwrap();
    // The records, not the spare zeros the file is extended with ahead of them.
    let records_end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let middle = records_end / 2;
    bytes[middle] ^= 0x5A;
    std::fs::write(&segment, bytes).unwrap();
    let node = cluster.node(&follower);
    let output = Command::new(support::binaries().join("baton-node")).args(&node.args).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&segment.display().to_string()) && stderr.contains("corrupt record at byte"), "{stderr}");
    assert!(stderr.contains("Fix:"), "the message says what to do: {stderr}");
    for i in 0..50 {
        assert!(client.get(format!("k{i}").as_bytes(), ReadMode::Leader).await.unwrap().0.is_some());
    }
}

/// Goal: one QUIC stream carries a client's requests, answered in the order sent, even
/// when they arrive back to back; garbage on a stream ends that stream only, and the
/// same connection and the node go on serving; a request the node does not know gets
/// an error naming the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_stream_answers_in_order_and_garbage_ends_only_that_stream() {
    use baton_node::frame::{ErrorCode, Request, Response};
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let leader_addr = cluster.addrs()[leader[1..].parse::<usize>().unwrap() - 1];
    let credentials = Credentials::load(&cluster.certs, &Identity::Operator("operator".into())).unwrap();
    let config = baton_node::tls::any_node_client_config(&credentials).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = endpoint.connect_with(config, leader_addr, "node.baton").unwrap().await.unwrap();
    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &Frame::Hello { protocol: PROTOCOL_VERSION, name: "operator".into(), incarnation: 0, cluster_id: 0 },
    )
    .await
    .unwrap();
    assert!(matches!(read_frame(&mut receive).await.unwrap(), Some(Frame::HelloReply { accepted: true, .. })));

    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    for i in 0..3u8 {
        let request = Request::Put { key: vec![b'p', i], value: vec![i] };
        write_frame(&mut send, &Frame::Request { request }).await.unwrap();
    }
    let mut indexes = Vec::new();
    for _ in 0..3 {
        match read_frame(&mut receive).await.unwrap() {
            Some(Frame::Response { response: Response::Written { index, .. } }) => indexes.push(index),
            other => panic!("expected a write's acknowledgement, got {other:?}"),
        }
    }
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "answered in the order sent: {indexes:?}");

    let (mut bad_send, mut bad_receive) = connection.open_bi().await.unwrap();
    bad_send.write_all(&[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut bad_receive)).await.unwrap();
    assert!(matches!(ended, Ok(None) | Err(_)), "the garbled stream ends: {ended:?}");

    // A request this node does not know (a newer `baton`'s) is answered, not dropped,
    // and the stream goes on.
    send.write_all(&[2, 0, 0, 0, 3, 200]).await.unwrap();
    match read_frame(&mut receive).await.unwrap() {
        Some(Frame::Response { response: Response::Error { code: ErrorCode::Unsupported, message, .. } }) => {
            assert!(message.contains("does not know that request") && message.contains("Fix:"), "{message}")
        }
        other => panic!("expected an unsupported-request error, got {other:?}"),
    }
    write_frame(&mut send, &Frame::Request { request: Request::Get { key: vec![b'p', 2], read: ReadMode::Leader } })
        .await
        .unwrap();
    match read_frame(&mut receive).await.unwrap() {
        Some(Frame::Response { response: Response::Value { value, .. } }) => assert_eq!(value, Some(vec![2])),
        other => panic!("expected the value, got {other:?}"),
    }
    client.put(b"after", b"garbage").await.unwrap();
}

/// A small tmpfs mounted for one test, unmounted when dropped (after the nodes using it:
/// declare it before the cluster).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// None where this process may not mount (not root, or a container that forbids it).
    fn mount(dir: &std::path::Path, bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let size = format!("size={bytes}");
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(dir).output();
        mounted.is_ok_and(|o| o.status.success()).then(|| SmallDisk(dir.to_path_buf()))
    }

    fn resize(&self, bytes: u64) {
        let options = format!("remount,size={bytes}");
        let status = Command::new("mount").args(["-o", &options]).arg(&self.0).status().unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Goal: a follower whose data disk fills up is reported before it is full, then stops
/// naming the disk and the fix, while the other two keep acknowledging writes; it refuses
/// to start again until there is room, and once there is, catches up from its own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_stops_the_node_with_the_fix() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&scratch.path().join("small"), 6 << 20) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    let victim = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id.clone();
    let node = cluster.node(&victim);
    node.kill();
    let small_dir = disk.0.join("data");
    let at = node.args.iter().position(|a| a == "--data-dir").unwrap() + 1;
    node.args[at] = small_dir.display().to_string();
    node.start();
    let addr = node.addr;
    let started = wait_until!(Duration::from_secs(10), client.status_of(addr).await.ok());
    assert!(started.is_some_and(|s| s.disk_free_bytes.is_some_and(|free| free < 6 << 20)));
    let baton = |args: &[&str]| {
        let cluster_arg = cluster.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        Command::new(support::binaries().join("baton"))
            .args(["--cluster", &cluster_arg, "--certs", &cluster.certs.display().to_string()])
            .args(args)
            .output()
            .unwrap()
    };
    let output = baton(&["status"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("{victim} (")) && stderr.contains("data disk has"), "{stderr}");

    // 2 KiB values until the small disk is full and the node stops.
    let value = vec![b'x'; 2048];
    let mut written = 0u64;
    let stopped = wait_until!(Duration::from_secs(60), {
        for _ in 0..50 {
            client.put(format!("fill{written}").as_bytes(), &value).await.expect("the other two still acknowledge");
            written += 1;
        }
        cluster.node(&victim).child.as_mut().unwrap().try_wait().unwrap()
    });
    let status = stopped.expect("the node stops once its disk is full");
    // Returned to main, which alone exits: 70 (EX_SOFTWARE), as for every storage failure.
    assert_eq!(status.code(), Some(i32::from(baton_node::server::EXIT_FATAL)), "{status:?}");
    let log = std::fs::read_to_string(&cluster.node(&victim).log).unwrap();
    assert!(log.contains("the disk is full") && log.contains("Fix: free space"), "{log}");
    cluster.node(&victim).child = None;

    // Still full: it refuses to start, naming the directory, the figures and the fix.
    let output =
        Command::new(support::binaries().join("baton-node")).args(&cluster.node(&victim).args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started on a full disk");
    assert!(stderr.contains(&small_dir.display().to_string()) && stderr.contains("bytes free"), "{stderr}");

    // Room again: it starts and catches up with every write.
    disk.resize(96 << 20);
    let leader_addr = cluster.nodes.iter().find(|n| n.id == leader).unwrap().addr;
    let commit = client.status_of(leader_addr).await.unwrap().commit_index;
    cluster.node(&victim).start();
    let caught_up =
        wait_until!(Duration::from_secs(30), client.status_of(addr).await.ok().filter(|s| s.applied_index >= commit));
    assert!(caught_up.is_some(), "{victim} did not catch up after {written} writes\n{}", cluster.logs());
}

/// A directory holding the cluster's CA certificate and one holder's certificate and key,
/// valid from `start_days` to `end_days` from now (negative: in the past).
fn certificate_dir(cluster: &Cluster, identity: &Identity, start_days: i64, end_days: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(cluster.certs.join("ca.pem"), dir.path().join("ca.pem")).unwrap();
    let authority = baton_node::certs::Authority::load(&cluster.certs).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let issued = authority
        .issue_valid(identity, now + time::Duration::days(start_days), now + time::Duration::days(end_days))
        .unwrap();
    issued.write(dir.path()).unwrap();
    dir
}

/// Goal (issue 21): certificates have a lifetime, and time is handled on purpose:
/// an expired client certificate is refused (and counted); one that starts after the
/// node's clock (as every certificate looks to a Pi whose clock is behind) is accepted,
/// counted and shown as a clock problem; a node whose own certificate expired refuses to
/// start, naming the file and `--renew`; `baton certs --renew` issues new certificates
/// from the same CA and SIGHUP makes running nodes use them, with no outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_expire_renew_on_sighup_and_a_clock_behind_is_tolerated() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    let five_years = now_s + i64::from(baton_node::certs::CERT_LIFETIME_DAYS_DEFAULT) * 86_400;
    for status in cluster.statuses(&mut client).await {
        let not_after = status.certificate_not_after_unix_s.expect("status shows the certificate's end");
        assert!((not_after - five_years).abs() < 600, "{}: {not_after} vs {five_years}", status.id);
    }

    let expired = certificate_dir(&cluster, &Identity::Client("late".into()), -10, -1);
    let mut late = Client::new(cluster.addrs(), expired.path(), &Identity::Client("late".into())).unwrap();
    late.deadline = Duration::from_secs(2);
    let error = late.put(b"late", b"v").await.unwrap_err();
    assert!(matches!(error, ClientError::Deadline(..)), "an expired certificate is refused: {error}");

    let early = certificate_dir(&cluster, &Identity::Client("early".into()), 1, 400);
    let mut ahead = Client::new(cluster.addrs(), early.path(), &Identity::Client("early".into())).unwrap();
    ahead.put(b"early", b"v").await.expect("a certificate that starts after the node's clock is accepted");
    let behind: u64 = cluster.statuses(&mut client).await.iter().map(|s| s.clock_behind_accepts).sum();
    assert!(behind >= 1, "and counted");
    assert!(cluster.logs().contains("the clock is behind"), "and logged");

    let victim = cluster.nodes[0].id.clone();
    cluster.node(&victim).kill();
    let own = certificate_dir(&cluster, &Identity::Node(victim.clone()), -10, -1);
    let certs_flag = cluster.certs.display().to_string();
    let args: Vec<String> = cluster
        .node(&victim)
        .args
        .iter()
        .map(|arg| if *arg == certs_flag { own.path().display().to_string() } else { arg.clone() })
        .collect();
    let output = Command::new(support::binaries().join("baton-node")).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{victim}.pem")) && stderr.contains("expired") && stderr.contains("--renew"),
        "{stderr}"
    );
    cluster.node(&victim).start();
    let all_up = wait_until!(ELECTION, (cluster.statuses(&mut client).await.len() == 3).then_some(()));
    assert!(all_up.is_some(), "{victim} restarted with its own certificate\n{}", cluster.logs());

    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let options = baton_node::certs::IssueOptions { lifetime_days: 20, renew: true };
    let renewed = baton_node::certs::generate_cluster_with(&cluster.certs, &nodes, options).unwrap();
    assert!(renewed.holders.iter().all(|(_, made)| *made == baton_node::certs::Made::Renewed), "{renewed:?}");
    for node in &cluster.nodes {
        node.signal("HUP");
    }
    let twenty_days = now_s + 20 * 86_400;
    let reloaded = wait_until!(ELECTION, {
        let statuses = cluster.statuses(&mut client).await;
        (statuses.len() == 3
            && statuses
                .iter()
                .all(|s| s.certificate_not_after_unix_s.is_some_and(|end| (end - twenty_days).abs() < 600)))
        .then_some(())
    });
    assert!(reloaded.is_some(), "every node reloaded on SIGHUP\n{}", cluster.logs());
    let mut renewed_client = cluster.client();
    renewed_client.put(b"after-renewal", b"v").await.expect("the renewed certificates work");
    let output = Command::new(support::binaries().join("baton"))
        .args(["--cluster", &cluster.addrs()[0].to_string(), "--certs", &certs_flag, "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "status warns of certificates expiring within 30 days: {stderr}");
    assert!(stderr.contains("its certificate expires in 19 days") || stderr.contains("expires in 20 days"), "{stderr}");
}

/// Goal (issue 21): `baton revoke --cert FILE` makes every node refuse that certificate
/// as soon as the revocation is replicated to it: its open connections close and new
/// handshakes fail, other holders are unaffected, and a restarted node still refuses it
/// (the revocation is in the log and in snapshots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_by_every_node() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    cluster.wait_for_leader(&mut client, ELECTION).await;
    let gateway_identity = Identity::Client("gw7".into());
    let gateway_dir = certificate_dir(&cluster, &gateway_identity, -1, 30);
    let mut gateway = Client::new(cluster.addrs(), gateway_dir.path(), &gateway_identity).unwrap();
    gateway.deadline = Duration::from_secs(2);
    gateway.put(b"gw", b"1").await.unwrap();
    assert_eq!(gateway.connect_all().await, 3, "connected to every node before the revocation");

    let output = Command::new(support::binaries().join("baton"))
        .args(["--cluster", &cluster.addrs()[0].to_string(), "--certs", &cluster.certs.display().to_string()])
        .args(["revoke", "--cert", &gateway_dir.path().join("gw7.pem").display().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("revoked gw7.client.baton"), "{stdout}");
    let everywhere = wait_until!(Duration::from_secs(5), {
        let statuses = cluster.statuses(&mut client).await;
        (statuses.len() == 3 && statuses.iter().all(|s| s.revoked_certificates.len() == 1)).then_some(())
    });
    assert!(everywhere.is_some(), "every node applied the revocation\n{}", cluster.logs());
    let error = gateway.put(b"gw", b"2").await.unwrap_err();
    assert!(matches!(error, ClientError::Deadline(..)), "the revoked holder's connections are gone: {error}");
    client.put(b"others", b"unaffected").await.unwrap();
    assert!(cluster.logs().contains("closed connections of revoked certificates"));

    let restarted = cluster.nodes[2].id.clone();
    cluster.node(&restarted).kill();
    cluster.node(&restarted).start();
    let addr = cluster.node(&restarted).addr;
    let back = wait_until!(ELECTION, client.status_of(addr).await.ok().filter(|s| s.revoked_certificates.len() == 1));
    assert!(back.is_some(), "{restarted} came back with the revocation\n{}", cluster.logs());
    let mut again = Client::new(vec![addr], gateway_dir.path(), &gateway_identity).unwrap();
    again.deadline = Duration::from_secs(2);
    assert!(again.get(b"gw", ReadMode::Any).await.is_err(), "the restarted node refuses it too");
}
