//! Live membership on real `baton-node` processes: a node joins a running cluster as a
//! learner, catches up, is promoted by the leader, takes leadership; a member is removed
//! and its id refused from then on; a joined node restarts from its own data; every
//! refusal names its reason. Each test starts its own nodes in a temporary directory and
//! bounds every wait.

mod support;

use baton_node::client::Client;
use baton_node::frame::{Json, MemberChange, ReadMode, Request, Response};
use baton_node::status::{MembersVerdict, MembersView};
use std::net::SocketAddr;
use std::time::Duration;
use support::{free_port, Cluster, Node};

const ELECTION: Duration = Duration::from_secs(10);
const CATCH_UP: Duration = Duration::from_secs(20);

/// A node `name` that joins the cluster through `via`, with an empty data directory.
fn joiner(cluster: &Cluster, name: &str, via: SocketAddr) -> Node {
    baton_node::certs::generate_cluster(&cluster.certs, &[name.to_string()]).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data_dir = cluster.dir.path().join(name);
    let args = [
        "--id",
        name,
        "--listen",
        &addr.to_string(),
        "--join",
        &via.to_string(),
        "--data-dir",
        &data_dir.display().to_string(),
        "--certs",
        &cluster.certs.display().to_string(),
    ];
    let log = cluster.dir.path().join(format!("{name}.log"));
    Node { id: name.into(), addr, data_dir, args: args.map(String::from).to_vec(), child: None, log }
}

async fn change(client: &mut Client, change: MemberChange, dry_run: bool) -> Response {
    client.request(Request::ChangeMembers { change, dry_run }).await.unwrap()
}

fn refusal(response: Response) -> Vec<String> {
    match response {
        Response::MembersVerdict(Json(MembersVerdict { accepted: false, reasons, .. })) => reasons,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn members_at(client: &mut Client, addr: SocketAddr) -> Option<MembersView> {
    match client.call(addr, &Request::Members).await {
        Ok(Response::Members(Json(view))) => Some(view),
        _ => None,
    }
}

fn role_of(view: &MembersView, name: &str) -> Option<&'static str> {
    let id = view.record.id_of(name)?;
    let member = view.record.membership.member(id)?;
    Some(if member.voter { "voter" } else { "learner" })
}

/// Goal: the whole life of a member, live. A node started with `--join` before it is
/// added waits, saying why; once added it receives the log, is promoted to voter by the
/// leader once caught up, and can lead. A removed follower's id is refused at its next
/// hello, writes go on, and every node agrees on one cluster id. A joined node restarts
/// from its own data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_catches_up_is_promoted_leads_and_a_member_is_removed() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    for i in 0..300 {
        client.put(format!("before-{i}").as_bytes(), b"x").await.unwrap();
    }
    let via = cluster.node("n2").addr;
    let mut n4 = joiner(&cluster, "n4", via);
    n4.start();
    let waiting = wait_until!(ELECTION, {
        let log = std::fs::read_to_string(&n4.log).unwrap_or_default();
        log.contains("baton member add n4").then_some(())
    });
    assert!(waiting.is_some(), "a node not yet added says how to add it\n{}", cluster.logs());

    let add = MemberChange::Add { name: "n4".into(), addr: n4.addr.to_string(), priority: 1, learner_only: false };
    match change(&mut client, add.clone(), false).await {
        Response::Written { .. } => {}
        other => panic!("add refused: {other:?}"),
    }
    let n4_addr = n4.addr;
    let promoted = wait_until!(CATCH_UP, {
        let view = members_at(&mut client, cluster.node(&leader).addr).await;
        view.filter(|v| role_of(v, "n4") == Some("voter") && !v.change_pending)
    });
    let view = promoted.unwrap_or_else(|| panic!("n4 was not promoted\n{}", cluster.logs()));
    assert_eq!(view.record.membership.voters(), 4);
    let cluster_id = view.record.cluster_id;
    assert_ne!(cluster_id, 0, "the first leader chose the cluster's id");
    match client.call(n4_addr, &Request::Get { key: b"before-0".to_vec(), read: ReadMode::After(300) }).await {
        Ok(Response::Value { value: Some(value), .. }) => assert_eq!(value, b"x"),
        other => panic!("n4 should serve what was written before it joined: {other:?}"),
    }
    assert!(matches!(change(&mut client, add, true).await, Response::MembersVerdict(_)), "added once only");

    // Remove a follower other than n4, then let it try to come back.
    let removed = ["n1", "n2", "n3"].into_iter().find(|n| *n != leader).unwrap().to_string();
    match change(&mut client, MemberChange::Remove { name: removed.clone() }, false).await {
        Response::Written { .. } => {}
        other => panic!("remove refused: {other:?}"),
    }
    client.put(b"after-removal", b"y").await.unwrap();
    cluster.node(&removed).kill();
    cluster.node(&removed).start();
    let removed_log = cluster.node(&removed).log.clone();
    let refused = wait_until!(ELECTION, {
        let log = std::fs::read_to_string(&removed_log).unwrap_or_default();
        log.contains("was removed from this cluster and is never accepted again").then_some(())
    });
    assert!(refused.is_some(), "the removed id is refused with the reason\n{}", cluster.logs());
    for name in ["n1", "n2", "n3"].into_iter().filter(|n| *n != removed) {
        let view = members_at(&mut client, cluster.node(name).addr).await.unwrap();
        assert_eq!(role_of(&view, &removed), None, "{name} still counts {removed}");
        assert_eq!(view.record.cluster_id, cluster_id, "{name} has another cluster id");
    }

    // The new member can lead.
    match client.request(Request::Switchover { to: Some("n4".into()), dry_run: false }).await.unwrap() {
        Response::Switchover { started: true, .. } => {}
        other => panic!("switchover to n4 refused: {other:?}"),
    }
    let n4_leads =
        wait_until!(ELECTION, { client.status_of(n4_addr).await.ok().filter(|s| s.role == "leader").map(|_| ()) });
    assert!(n4_leads.is_some(), "n4 did not take over\n{}", cluster.logs());
    let mut through_n4 =
        Client::new(vec![n4_addr], &cluster.certs, &baton_node::certs::Identity::Operator("operator".into())).unwrap();
    through_n4.put(b"led-by-n4", b"z").await.unwrap();

    // A joined node restarts from its own data (its --join is not read again).
    n4.kill();
    n4.start();
    let back = wait_until!(ELECTION, {
        match through_n4.put(b"after-restart", b"w").await {
            Ok(_) => Some(()),
            Err(_) => None,
        }
    });
    assert!(back.is_some(), "the cluster did not take writes after n4 restarted\n{}", cluster.logs());
    let view = members_at(&mut through_n4, n4_addr).await.unwrap();
    assert_eq!(role_of(&view, "n4"), Some("voter"));
    drop(n4);
}

/// Goal: changes that would hurt are refused, each with its reason, and change nothing:
/// removing the leader, removing a voter when the rest could not take writes, adding a
/// member twice, promoting or removing a node that is not a member, a bad name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmful_changes_are_refused_with_their_reasons() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, ELECTION).await;
    client.put(b"k", b"v").await.unwrap();
    let reasons = refusal(change(&mut client, MemberChange::Remove { name: leader.clone() }, true).await);
    assert!(reasons[0].contains("cannot remove itself"), "{reasons:?}");
    let again = MemberChange::Add { name: "n2".into(), addr: "127.0.0.1:9".into(), priority: 1, learner_only: false };
    assert!(refusal(change(&mut client, again, false).await)[0].contains("already a member"));
    assert!(refusal(change(&mut client, MemberChange::Promote { name: "n9".into() }, false).await)[0]
        .contains("not a member"));
    let bad =
        MemberChange::Add { name: "bad name!".into(), addr: "127.0.0.1:9".into(), priority: 1, learner_only: false };
    assert!(!refusal(change(&mut client, bad, false).await).is_empty());

    // With one follower down, removing the other would leave the leader alone.
    let followers: Vec<String> = ["n1", "n2", "n3"].into_iter().filter(|n| *n != leader).map(String::from).collect();
    cluster.node(&followers[0]).kill();
    // (Until an election timeout passes, the leader still counts the killed one live.)
    let reasons = wait_until!(ELECTION, {
        match change(&mut client, MemberChange::Remove { name: followers[1].clone() }, true).await {
            Response::MembersVerdict(Json(MembersVerdict { accepted: false, reasons, .. })) => {
                reasons.iter().any(|r| r.contains("writes would stop")).then_some(reasons)
            }
            _ => None,
        }
    });
    assert!(reasons.is_some(), "removing the last live follower must be refused\n{}", cluster.logs());
    let view = members_at(&mut client, cluster.node(&leader).addr).await.unwrap();
    assert_eq!(view.record.membership.voters(), 3, "nothing changed");
    client.put(b"still", b"writable").await.unwrap();
}
