//! Where a client's request is answered: here, or at the leader through this node
//! (node-side routing, for an application that can reach only its local node).
//! A client asks for forwarding per request; a request a follower forwarded is never
//! forwarded again, so leadership that moved meanwhile gives "not leader", not a loop.

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Answer it here.
    Here,
    /// Forward it to the leader, this node id, and relay the answer.
    Forward { leader: u8 },
    /// It asked for the leader and none is known (or the link to it is down): refuse
    /// with "not leader", which a client retries.
    NoLeader,
}

/// The route of a request that asked to be answered at the leader (`via_leader`), or
/// not; `forwarded`: it came from a follower; `leading`: this node leads; `leader`: the
/// leader it knows, with its link up.
pub fn route(via_leader: bool, forwarded: bool, leading: bool, leader: Option<u8>) -> Route {
    if !via_leader || leading || forwarded {
        return Route::Here;
    }
    match leader {
        Some(leader) => Route::Forward { leader },
        None => Route::NoLeader,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: only a request that asked for the leader, at a follower that knows one, is
    /// forwarded; a forwarded one never again; the leader answers everything itself.
    #[test]
    fn forwards_only_what_asked_once() {
        assert_eq!(route(true, false, false, Some(2)), Route::Forward { leader: 2 });
        assert_eq!(route(true, false, false, None), Route::NoLeader);
        assert_eq!(route(true, true, false, Some(2)), Route::Here, "never twice");
        assert_eq!(route(true, false, true, None), Route::Here, "the leader answers");
        assert_eq!(route(false, false, false, Some(2)), Route::Here, "not asked");
    }
}
