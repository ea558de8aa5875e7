/*
 * cluster_config.cpp — parsing atomix.initial_cluster and placing partitions
 * (see cluster_config.h).
 */
#include "cluster_config.h"

#include <algorithm>
#include <arpa/inet.h>

#include "core_only.h" /* last: nothing above brought in Postgres */

namespace atomix {

static std::string trim(const std::string &s)
{
    size_t b = s.find_first_not_of(" \t");
    size_t e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

NodeAddress parse_address(const std::string &text)
{
    std::string t = trim(text);
    size_t colon = t.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == t.size())
        throw ClusterConfigError("\"" + t + "\" is not host:port");
    NodeAddress a;
    a.host = t.substr(0, colon);
    if (a.host == "localhost")
        a.host = "127.0.0.1";
    struct in_addr ignored;
    if (inet_pton(AF_INET, a.host.c_str(), &ignored) != 1)
        throw ClusterConfigError("\"" + a.host + "\" is not an IPv4 address");
    std::string port = t.substr(colon + 1);
    if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
        std::stoul(port) == 0 || std::stoul(port) > 65535)
        throw ClusterConfigError("\"" + port + "\" is not a TCP port");
    a.port = static_cast<uint16_t>(std::stoul(port));
    return a;
}

ClusterConfig ClusterConfig::parse(const std::string &initial_cluster, uint32_t self_id,
                                   const std::string &self_address,
                                   uint32_t replication_factor)
{
    ClusterConfig c;
    if (trim(initial_cluster).empty()) {
        NodeAddress self = parse_address(self_address);
        self.id = self_id;
        c.nodes_.push_back(self);
    } else {
        size_t start = 0;
        while (start <= initial_cluster.size()) {
            size_t comma = initial_cluster.find(',', start);
            std::string item = trim(initial_cluster.substr(
                start, comma == std::string::npos ? std::string::npos : comma - start));
            start = comma == std::string::npos ? initial_cluster.size() + 1 : comma + 1;
            if (item.empty())
                continue;
            size_t eq = item.find('=');
            if (eq == std::string::npos)
                throw ClusterConfigError("\"" + item + "\" is not id=host:port");
            std::string id = trim(item.substr(0, eq));
            if (id.empty() || id.size() > 5 || id.find_first_not_of("0123456789") != std::string::npos ||
                std::stoul(id) == 0 || std::stoul(id) > 65535)
                throw ClusterConfigError("\"" + id + "\" is not a node id (1..65535)");
            NodeAddress a = parse_address(item.substr(eq + 1));
            a.id = static_cast<uint32_t>(std::stoul(id));
            for (const NodeAddress &n : c.nodes_) {
                if (n.id == a.id)
                    throw ClusterConfigError("node id " + id + " appears twice");
                if (n.address() == a.address())
                    throw ClusterConfigError("address " + a.address() + " appears twice");
            }
            c.nodes_.push_back(a);
        }
    }
    std::sort(c.nodes_.begin(), c.nodes_.end(),
              [](const NodeAddress &a, const NodeAddress &b) { return a.id < b.id; });
    auto self = std::find_if(c.nodes_.begin(), c.nodes_.end(),
                             [&](const NodeAddress &n) { return n.id == self_id; });
    if (self == c.nodes_.end())
        throw ClusterConfigError("atomix.node_id " + std::to_string(self_id) +
                                 " is not in atomix.initial_cluster");
    if (!trim(initial_cluster).empty() && self->address() != parse_address(self_address).address())
        throw ClusterConfigError("atomix.listen_address " + trim(self_address) +
                                 " differs from node " + std::to_string(self_id) +
                                 "'s address in atomix.initial_cluster (" + self->address() + ")");
    c.self_index_ = static_cast<size_t>(self - c.nodes_.begin());
    if (replication_factor == 0)
        throw ClusterConfigError("atomix.replication_factor must be at least 1");
    c.voters_ = std::min<uint32_t>(replication_factor, static_cast<uint32_t>(c.nodes_.size()));
    return c;
}

const NodeAddress *ClusterConfig::node(uint32_t id) const
{
    for (const NodeAddress &n : nodes_)
        if (n.id == id)
            return &n;
    return nullptr;
}

std::vector<uint32_t> ClusterConfig::voters(uint32_t partition) const
{
    std::vector<uint32_t> ids;
    size_t n = nodes_.size();
    for (uint32_t i = 0; i < voters_; i++)
        ids.push_back(nodes_[(partition + i) % n].id);
    return ids;
}

bool ClusterConfig::is_voter(uint32_t partition, uint32_t node_id) const
{
    for (uint32_t id : voters(partition))
        if (id == node_id)
            return true;
    return false;
}

} // namespace atomix
