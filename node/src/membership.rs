//! The cluster's members by name and address, and the small numeric ids the core uses.
//! Every node sorts the same names the same way, so ids agree across the cluster.

use crate::addr::NodeAddr;
use baton_common::NodeId;

#[derive(Clone, Debug)]
pub struct Membership {
    /// Sorted names; a name's id is its position plus one.
    names: Vec<String>,
    /// Where each node is reached, as configured (each node's own is what it advertises).
    addrs: Vec<NodeAddr>,
    me: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("node {0:?} is listed twice")]
    Duplicate(String),
    #[error("at most {max} nodes, got {count}", max = baton_common::limits::NODES_MAX)]
    TooMany { count: usize },
}

impl Membership {
    pub fn new(me: &str, my_addr: NodeAddr, peers: &[(String, NodeAddr)]) -> Result<Membership, MembershipError> {
        let mut all: Vec<(String, NodeAddr)> = peers.to_vec();
        all.push((me.to_string(), my_addr));
        all.sort();
        for pair in all.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(MembershipError::Duplicate(pair[0].0.clone()));
            }
        }
        if all.len() > baton_common::limits::NODES_MAX {
            return Err(MembershipError::TooMany { count: all.len() });
        }
        Ok(Membership {
            names: all.iter().map(|(n, _)| n.clone()).collect(),
            addrs: all.iter().map(|(_, a)| a.clone()).collect(),
            me: me.to_string(),
        })
    }

    pub fn me(&self) -> NodeId {
        self.id_of(&self.me).expect("self is a member")
    }

    pub fn my_name(&self) -> &str {
        &self.me
    }

    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.names.iter().position(|n| n == name).map(|p| NodeId(p as u8 + 1))
    }

    pub fn name_of(&self, id: NodeId) -> &str {
        &self.names[usize::from(id.0) - 1]
    }

    pub fn addr_of(&self, id: NodeId) -> &NodeAddr {
        &self.addrs[usize::from(id.0) - 1]
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (1..=self.names.len() as u8).map(NodeId)
    }

    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.me();
        self.ids().filter(move |id| *id != me)
    }
}
