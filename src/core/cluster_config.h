/*
 * cluster_config.h — who is in the cluster and where each partition lives.
 *
 * Parsed from atomix.initial_cluster ("1=127.0.0.1:7401,2=127.0.0.1:7402"),
 * identical on every node, so every node computes the same placement without
 * talking to anyone.  Pure C++: unit tested without a server.
 *
 * Placement: nodes sorted by id; partition p's voters are the
 * replication_factor nodes starting at position p % N, and the first of them
 * is its preferred leader, so leadership spreads evenly.  Every other node
 * keeps a non-voting standby replica: every node holds every partition's
 * state, so reads stay local on every node.
 */
#ifndef ATOMIX_CLUSTER_CONFIG_H
#define ATOMIX_CLUSTER_CONFIG_H

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace atomix {

struct NodeAddress {
    uint32_t id = 0;
    std::string host;
    uint16_t port = 0;
    std::string address() const { return host + ":" + std::to_string(port); }
};

class ClusterConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/* Parses "host:port" (IPv4 dotted quad or "localhost"). */
NodeAddress parse_address(const std::string &text);

class ClusterConfig {
  public:
    /* initial_cluster empty: a one-node cluster of (self_id, self_address). */
    static ClusterConfig parse(const std::string &initial_cluster, uint32_t self_id,
                               const std::string &self_address, uint32_t replication_factor);

    const std::vector<NodeAddress> &nodes() const { return nodes_; }
    const NodeAddress &self() const { return nodes_[self_index_]; }
    const NodeAddress *node(uint32_t id) const;
    uint32_t voters_per_partition() const { return voters_; }

    /* Ids of partition p's voting replicas, preferred leader first. */
    std::vector<uint32_t> voters(uint32_t partition) const;
    /* the first of voters(partition), without building the list (leader
     * balancing asks for every partition at every tick) */
    uint32_t preferred_leader(uint32_t partition) const { return nodes_[partition % nodes_.size()].id; }
    bool is_voter(uint32_t partition, uint32_t node_id) const;

  private:
    std::vector<NodeAddress> nodes_;
    size_t self_index_ = 0;
    uint32_t voters_ = 1;
};

} // namespace atomix

#endif
