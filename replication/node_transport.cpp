/*
 * node_transport.cpp — connections, handshake and framing of the node
 * transport (protocol in node_transport.h).
 */
#include "node_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "le_bytes.h"

namespace atomix {

static constexpr char kMagic[8] = {'A', 'T', 'M', 'X', 'N', 'O', 'D', 'E'};
/* The version of everything that crosses a link: 2 since atomix 0.5, whose
 * commands (in Raft entries and forwards) carry their origin's floor.  A
 * node of another version is refused both ways, so a cluster in the middle
 * of an upgrade never mixes formats: a 0.4 node would skip 0.5 entries as
 * malformed while 0.5 nodes apply them. */
static constexpr uint8_t kVersion = 2;
static constexpr uint64_t kRedialMs = 250;

static int64_t now_us()
{
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/* Constant-time comparison of two MACs. */
static bool same_mac(const std::string &a, const std::string &b)
{
    if (a.size() != b.size())
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); i++)
        diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

struct NodeTransport::Connection {
    enum State { Connecting, Handshake, Ready };
    NodeTransport *transport;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    bool outbound;
    uint8_t role = kRoleMain; /* a digest link (kRoleDigest) carries only DIGEST and PING */
    uint32_t peer_id; /* expected (outbound) or claimed in HELLO (inbound) */
    std::string peer_address;
    State state = Connecting;
    bool closing = false;
    std::string rbuf;
    std::string c_nonce;
    std::string s_nonce;
    /* liveness, in uv_now() milliseconds (monotonic) */
    uint64_t created_ms = 0;
    uint64_t last_recv_ms = 0;
    uint64_t last_send_ms = 0;
    /* an inbound digest link: when read_digest_links() last read it */
    uint64_t last_read_ms = 0;
    /* test-only holds (TransportFaults) */
    std::vector<std::string> held_out;
    uint64_t held_out_since_ms = 0;
    std::string held_in;
    /* frames waiting for NodeTransport::flush() (batching) */
    std::string batch;
};

struct NodeTransport::Peer {
    NodeTransport *transport;
    NodeAddress address;
    Connection *out = nullptr; /* our dialed connection, in any state */
    Connection *digest_out = nullptr; /* our dialed digest link, in any state */
    uv_timer_t redial;
    bool redial_initialized = false;
    uv_timer_t digest_redial;
    bool digest_redial_initialized = false;
    bool reported_down = false;
    bool reported_bad_secret = false;
};

struct WriteReq {
    uv_write_t req;
    std::string data;
};

NodeTransport::NodeTransport(uv_loop_t *loop, const ClusterConfig &config, std::string secret,
                             TransportHooks hooks)
    : loop_(loop), config_(config), secret_(std::move(secret)), hooks_(std::move(hooks))
{
    for (const NodeAddress &n : config_.nodes()) {
        if (n.id == config_.self().id)
            continue;
        auto peer = std::make_unique<Peer>();
        peer->transport = this;
        peer->address = n;
        peers_[n.id] = std::move(peer);
    }
}

NodeTransport::~NodeTransport() = default;

/* ---- writing ---- */

static void write_done(uv_write_t *req, int) { delete static_cast<WriteReq *>(req->data); }

/* A batch this large is written at once rather than at the next flush. */
static constexpr size_t kFlushAtBytes = 256 * 1024;

static std::string frame_bytes(FrameType type, const char *head, size_t head_len, const char *body,
                               size_t body_len)
{
    std::string data;
    data.reserve(5 + head_len + body_len);
    put_le32(data, static_cast<uint32_t>(1 + head_len + body_len));
    data.push_back(static_cast<char>(type));
    data.append(head, head_len);
    if (body_len)
        data.append(body, body_len);
    return data;
}

/* A write the socket takes at once is made with uv_try_write: no request,
 * no completion callback.  A uv_write's callback always runs from libuv's
 * pending queue, which makes the worker's next wait return at once — one
 * extra loop turn, with its walks over every partition, after every turn
 * that wrote (an idle node's digest tick was two turns, not one).  Only
 * what the socket does not take, or anything behind writes still queued
 * (uv_try_write refuses then, so frames keep their order), goes through
 * uv_write. */
static bool write_bytes(uv_tcp_t *tcp, std::string data)
{
    uv_stream_t *stream = reinterpret_cast<uv_stream_t *>(tcp);
    uv_buf_t whole = uv_buf_init(const_cast<char *>(data.data()), static_cast<unsigned int>(data.size()));
    int sent = uv_try_write(stream, &whole, 1);
    if (sent == static_cast<int>(data.size()))
        return true;
    /* an error (a peer gone) is left to uv_write as before, whose failure
     * the reading side sees: never a connection_lost from inside a send */
    if (sent > 0)
        data.erase(0, static_cast<size_t>(sent));
    WriteReq *w = new WriteReq();
    w->req.data = w;
    w->data = std::move(data);
    uv_buf_t buf = uv_buf_init(const_cast<char *>(w->data.data()),
                               static_cast<unsigned int>(w->data.size()));
    if (uv_write(&w->req, stream, &buf, 1, write_done) != 0) {
        delete w;
        return false;
    }
    return true;
}

/* Every write to a peer goes through here: a test hold keeps the frame back
 * (as a dropping firewall keeps TCP retransmitting) instead of sending it. */
void NodeTransport::write_on(Connection *c, FrameType type, const char *head, size_t head_len,
                             const char *body, size_t body_len)
{
    std::string data = frame_bytes(type, head, head_len, body, body_len);
    c->last_send_ms = uv_now(loop_);
    if (c->peer_id != 0 && holds_out(c->peer_id)) {
        if (c->held_out.empty())
            c->held_out_since_ms = uv_now(loop_);
        c->held_out.push_back(std::move(data));
        return;
    }
    frames_sent_++;
    /* handshake frames go out at once: the peer answers them */
    if (batching_ && c->state == Connection::Ready) {
        if (c->batch.empty())
            unflushed_.push_back(c);
        c->batch.append(data);
        /* a big batch is not held back for the rest of the turn */
        if (c->batch.size() >= kFlushAtBytes)
            flush_connection(c);
        return;
    }
    writes_++;
    about_to_write();
    if (!write_bytes(&c->tcp, std::move(data)))
        connection_lost(c, "write failed");
}

void NodeTransport::about_to_write()
{
    if (hooks_.before_write)
        hooks_.before_write();
}

void NodeTransport::set_batching(bool on)
{
    if (!on)
        flush();
    batching_ = on;
}

void NodeTransport::flush_connection(Connection *c)
{
    if (c->batch.empty())
        return;
    std::string data;
    data.swap(c->batch);
    writes_++;
    about_to_write();
    if (!write_bytes(&c->tcp, std::move(data)))
        connection_lost(c, "write failed");
}

void NodeTransport::flush()
{
    std::vector<Connection *> pending;
    pending.swap(unflushed_);
    for (Connection *c : pending)
        if (!c->closing)
            flush_connection(c);
}

bool NodeTransport::send(uint32_t peer, FrameType type, const std::string &payload)
{
    return send(peer, type, payload.data(), payload.size(), nullptr, 0);
}

bool NodeTransport::send(uint32_t peer, FrameType type, const char *head, size_t head_len,
                         const char *body, size_t body_len)
{
    auto it = peers_.find(peer);
    if (it == peers_.end() || closing_)
        return false;
    Connection *c = link_for(*it->second, type);
    if (!c || c->state != Connection::Ready || c->closing)
        return false;
    write_on(c, type, head, head_len, body, body_len);
    return !c->closing;
}

/* A digest goes on the digest link while it is up, anything else (and a
 * digest while it is not) on the main link. */
NodeTransport::Connection *NodeTransport::link_for(const Peer &peer, FrameType type) const
{
    Connection *d = peer.digest_out;
    if (type == FrameType::Digest && d && d->state == Connection::Ready && !d->closing)
        return d;
    return peer.out;
}

bool NodeTransport::digest_link_up(uint32_t peer) const
{
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return false;
    Connection *d = it->second->digest_out;
    return d && d->state == Connection::Ready && !d->closing;
}

uint64_t NodeTransport::link_generation(uint32_t peer) const
{
    auto it = generation_.find(peer);
    return it == generation_.end() ? 0 : it->second;
}

bool NodeTransport::connected(uint32_t peer) const
{
    auto it = peers_.find(peer);
    return it != peers_.end() && it->second->out && it->second->out->state == Connection::Ready &&
           !it->second->out->closing;
}

int64_t NodeTransport::last_contact_us(uint32_t peer) const
{
    auto it = last_contact_.find(peer);
    return it == last_contact_.end() ? 0 : it->second;
}

/* ---- reading ---- */

/* One loop thread: a single buffer serves every read, libuv's and
 * read_digest_link's (received() copies what it is given before any frame
 * is handled). */
static char read_buffer[64 * 1024];

static void alloc_read(uv_handle_t *, size_t, uv_buf_t *buf)
{
    *buf = uv_buf_init(read_buffer, sizeof(read_buffer));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    auto *c = static_cast<NodeTransport::Connection *>(stream->data);
    NodeTransport *t = c->transport;
    if (nread < 0) {
        t->connection_lost(c, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
        return;
    }
    if (c->peer_id != 0 && t->holds_in(c->peer_id)) {
        c->held_in.append(buf->base, static_cast<size_t>(nread));
        return;
    }
    t->received(c, buf->base, static_cast<size_t>(nread));
}

void NodeTransport::received(Connection *c, const char *data, size_t n_bytes, uint64_t heard_ms)
{
    NodeTransport *t = this;
    frame_heard_ms_ = heard_ms ? heard_ms : uv_now(loop_);
    c->rbuf.append(data, n_bytes);
    size_t pos = 0;
    while (!c->closing && c->rbuf.size() - pos >= 5) {
        uint32_t len = get_le32(c->rbuf.data() + pos);
        /* before authentication only the small handshake frames are valid:
         * nobody unauthenticated gets to make us buffer megabytes */
        uint32_t limit = c->state == NodeTransport::Connection::Ready ? kMaxFrameBytes : 256;
        if (len == 0 || len > limit) {
            t->connection_lost(c, "malformed frame");
            return;
        }
        if (c->rbuf.size() - pos < 4 + static_cast<size_t>(len))
            break;
        FrameType type = static_cast<FrameType>(c->rbuf[pos + 4]);
        t->handle_frame(c, type, c->rbuf.data() + pos + 5, len - 1);
        pos += 4 + len;
    }
    if (!c->closing)
        c->rbuf.erase(0, pos);
}

/* ---- handshake ---- */

std::string NodeTransport::server_proof(const std::string &c_nonce, const std::string &s_nonce,
                                        uint32_t server_id) const
{
    std::string m = "S" + c_nonce + s_nonce;
    put_le32(m, server_id);
    return hooks_.hmac(secret_, m);
}

std::string NodeTransport::client_proof(const std::string &c_nonce, const std::string &s_nonce,
                                        uint32_t client_id) const
{
    std::string m = "C" + s_nonce + c_nonce;
    put_le32(m, client_id);
    return hooks_.hmac(secret_, m);
}

void NodeTransport::handle_frame(Connection *c, FrameType type, const char *p, size_t n)
{
    if (c->state != Connection::Ready) {
        handle_handshake(c, type, p, n);
        return;
    }
    if (type == FrameType::Hello || type == FrameType::Challenge || type == FrameType::Proof) {
        connection_lost(c, "unexpected handshake frame");
        return;
    }
    if (c->role == kRoleDigest && type != FrameType::Digest && type != FrameType::Ping) {
        connection_lost(c, "a frame other than DIGEST or PING on a digest link");
        return;
    }
    uint64_t now = uv_now(loop_);
    last_contact_[c->peer_id] =
        now_us() - 1000 * static_cast<int64_t>(now - std::min(now, frame_heard_ms_));
    c->last_recv_ms = frame_heard_ms_;
    if (type == FrameType::Ping)
        return;
    hooks_.on_frame(c->peer_id, type, p, n);
}

void NodeTransport::handle_handshake(Connection *c, FrameType type, const char *p, size_t n)
{
    uint32_t self = config_.self().id;
    if (!c->outbound && type == FrameType::Hello && c->c_nonce.empty()) {
        constexpr size_t kHelloBytes = 8 + 1 + 4 + kNonceBytes;
        bool has_role = n == kHelloBytes + 1;
        if ((n != kHelloBytes && !has_role) || memcmp(p, kMagic, 8) != 0) {
            connection_lost(c, "not an atomix node (bad HELLO)");
            return;
        }
        if (p[8] != kVersion) {
            uint32_t peer = get_le32(p + 9);
            if (config_.node(peer) && peer != self && !version_refused_logged_[peer])
                hooks_.log(1, "atomix transport: refused node " + std::to_string(peer) + " connecting from " +
                                  c->peer_address + ": it speaks atomix wire version " +
                                  std::to_string(static_cast<uint8_t>(p[8])) + ", this node " +
                                  std::to_string(kVersion) + "; every node must run the same atomix build");
            if (config_.node(peer) && peer != self)
                version_refused_logged_[peer] = true; /* until it authenticates */
            connection_lost(c, "");
            return;
        }
        uint8_t role = has_role ? static_cast<uint8_t>(p[kHelloBytes]) : kRoleMain;
        if (role != kRoleMain && role != kRoleDigest) {
            connection_lost(c, "not an atomix node (bad HELLO)");
            return;
        }
        if (role == kRoleDigest && !digest_links_) {
            /* as a node that predates digest links: the dialer sends its
             * digests on the main link */
            connection_lost(c, "");
            return;
        }
        c->role = role;
        c->peer_id = get_le32(p + 9);
        if (c->peer_id == self || !config_.node(c->peer_id)) {
            hooks_.log(1, "atomix transport: refused a connection from " + c->peer_address +
                              " claiming node id " + std::to_string(c->peer_id) +
                              ", which is not a peer in atomix.initial_cluster");
            connection_lost(c, "");
            return;
        }
        c->c_nonce.assign(p + 13, kNonceBytes);
        c->s_nonce = hooks_.random_bytes(kNonceBytes);
        std::string reply;
        put_le32(reply, self);
        reply += c->s_nonce;
        reply += server_proof(c->c_nonce, c->s_nonce, self);
        write_on(c, FrameType::Challenge, reply.data(), reply.size(), nullptr, 0);
        c->state = Connection::Handshake;
        return;
    }
    if (!c->outbound && type == FrameType::Proof && !c->c_nonce.empty()) {
        std::string proof(p, n);
        if (!same_mac(proof, client_proof(c->c_nonce, c->s_nonce, c->peer_id))) {
            /* logged once per peer until it authenticates again */
            if (!refused_logged_[c->peer_id])
                hooks_.log(1, "atomix transport: refused node " + std::to_string(c->peer_id) +
                                  " connecting from " + c->peer_address +
                                  ": it does not hold this cluster's atomix.cluster_secret");
            refused_logged_[c->peer_id] = true;
            connection_lost(c, "");
            return;
        }
        connection_ready(c);
        return;
    }
    if (c->outbound && type == FrameType::Challenge && c->state == Connection::Handshake) {
        if (n != 4 + kNonceBytes + kMacBytes || get_le32(p) != c->peer_id) {
            connection_lost(c, "bad CHALLENGE");
            return;
        }
        c->s_nonce.assign(p + 4, kNonceBytes);
        std::string proof(p + 4 + kNonceBytes, kMacBytes);
        if (!same_mac(proof, server_proof(c->c_nonce, c->s_nonce, c->peer_id))) {
            Peer &peer = *peers_[c->peer_id];
            if (!peer.reported_bad_secret)
                hooks_.log(1, "atomix transport: node " + std::to_string(c->peer_id) + " at " +
                                  c->peer_address +
                                  " does not hold this cluster's atomix.cluster_secret; not "
                                  "talking to it (retrying quietly)");
            peer.reported_bad_secret = true;
            peer.reported_down = true;
            connection_lost(c, "");
            return;
        }
        std::string mine = client_proof(c->c_nonce, c->s_nonce, self);
        write_on(c, FrameType::Proof, mine.data(), mine.size(), nullptr, 0);
        connection_ready(c);
        return;
    }
    connection_lost(c, "unexpected frame during handshake");
}

void NodeTransport::connection_ready(Connection *c)
{
    c->state = Connection::Ready;
    c->last_recv_ms = uv_now(loop_);
    last_contact_[c->peer_id] = now_us();
    refused_logged_[c->peer_id] = false;
    version_refused_logged_[c->peer_id] = false;
    if (c->role == kRoleDigest) {
        if (!c->outbound) {
            /* read at the owner's ticks (read_digest_links), never polled:
             * a digest no longer wakes this node */
            uv_read_stop(reinterpret_cast<uv_stream_t *>(&c->tcp));
            c->last_read_ms = uv_now(loop_);
            uv_os_fd_t fd;
            int on = 1;
            if (uv_fileno(reinterpret_cast<uv_handle_t *>(&c->tcp), &fd) == 0)
                (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
        }
        return;
    }
    if (c->outbound) {
        Peer &peer = *peers_[c->peer_id];
        if (peer.reported_down)
            hooks_.log(0, "atomix transport: connected to node " + std::to_string(c->peer_id) +
                              " at " + c->peer_address);
        peer.reported_down = false;
        peer.reported_bad_secret = false;
        generation_[c->peer_id]++;
    }
}

/* ---- connection lifecycle ---- */

void NodeTransport::connection_lost(Connection *c, const std::string &why)
{
    if (c->closing)
        return;
    c->closing = true;
    /* its unsent frames are lost with it, as those in its socket buffer
     * are (Raft resends; forwards are resent on the next link) */
    c->batch.clear();
    unflushed_.erase(std::remove(unflushed_.begin(), unflushed_.end(), c), unflushed_.end());
    if (c->outbound && c->role == kRoleDigest) {
        /* not reported: the main link's state is what operators follow */
        Peer &peer = *peers_[c->peer_id];
        if (peer.digest_out == c)
            peer.digest_out = nullptr;
        if (!closing_)
            schedule_redial(peer, kRoleDigest);
    } else if (c->outbound) {
        Peer &peer = *peers_[c->peer_id];
        if (peer.out == c)
            peer.out = nullptr;
        if (!peer.reported_down && !closing_ && !why.empty()) {
            hooks_.log(0, "atomix transport: lost node " + std::to_string(c->peer_id) + " at " +
                              c->peer_address + ": " + why);
            peer.reported_down = true;
        }
        if (!closing_)
            schedule_redial(peer, kRoleMain);
    } else {
        for (size_t i = 0; i < inbound_.size(); i++)
            if (inbound_[i] == c) {
                inbound_.erase(inbound_.begin() + static_cast<long>(i));
                break;
            }
    }
    uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp), [](uv_handle_t *h) {
        auto *conn = static_cast<NodeTransport::Connection *>(h->data);
        NodeTransport *t = conn->transport;
        delete conn;
        t->open_handles_--;
    });
}

/* Nagle plus delayed ACK stalls Raft round trips by ~40 ms; unacknowledged
 * data past kTcpUserTimeoutMs fails the socket (a link that silently drops);
 * keep-alive probes find a dead peer on an idle connection. */
static void set_socket_options(uv_tcp_t *tcp)
{
    uv_tcp_nodelay(tcp, 1);
    uv_tcp_keepalive(tcp, 1, 1);
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t *>(tcp), &fd) == 0) {
        unsigned timeout = kTcpUserTimeoutMs;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    auto *c = static_cast<NodeTransport::Connection *>(req->data);
    NodeTransport *t = c->transport;
    if (c->closing)
        return;
    if (status != 0) {
        t->connection_lost(c, uv_strerror(status));
        return;
    }
    set_socket_options(&c->tcp);
    uv_read_start(reinterpret_cast<uv_stream_t *>(&c->tcp), alloc_read, on_read);
    std::string hello(kMagic, sizeof(kMagic));
    hello.push_back(static_cast<char>(kVersion));
    put_le32(hello, t->config().self().id);
    c->c_nonce = t->random_bytes(kNonceBytes);
    hello += c->c_nonce;
    if (c->role == kRoleDigest)
        hello.push_back(static_cast<char>(kRoleDigest)); /* a main link's HELLO is as before */
    c->state = NodeTransport::Connection::Handshake;
    t->write_on(c, FrameType::Hello, hello.data(), hello.size(), nullptr, 0);
}

void NodeTransport::dial(Peer &peer, uint8_t role)
{
    Connection *&slot = role == kRoleDigest ? peer.digest_out : peer.out;
    if (closing_ || slot)
        return;
    auto *c = new Connection();
    c->transport = this;
    c->created_ms = uv_now(loop_);
    c->outbound = true;
    c->role = role;
    c->peer_id = peer.address.id;
    c->peer_address = peer.address.address();
    uv_tcp_init(loop_, &c->tcp);
    c->tcp.data = c;
    c->connect_req.data = c;
    open_handles_++;
    slot = c;
    struct sockaddr_in addr;
    uv_ip4_addr(peer.address.host.c_str(), peer.address.port, &addr);
    int rv = uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<struct sockaddr *>(&addr),
                            on_connect);
    if (rv != 0)
        connection_lost(c, uv_strerror(rv));
}

void NodeTransport::schedule_redial(Peer &peer, uint8_t role)
{
    if (role == kRoleDigest) {
        if (peer.digest_redial_initialized)
            uv_timer_start(&peer.digest_redial, [](uv_timer_t *timer) {
                auto *p = static_cast<Peer *>(timer->data);
                p->transport->dial(*p, kRoleDigest);
            }, kDigestRedialMs, 0);
        return;
    }
    uv_timer_start(&peer.redial, [](uv_timer_t *timer) {
        auto *p = static_cast<Peer *>(timer->data);
        p->transport->dial(*p, kRoleMain);
    }, kRedialMs, 0);
}

void NodeTransport::on_accept()
{
    auto *c = new Connection();
    c->transport = this;
    c->created_ms = uv_now(loop_);
    c->outbound = false;
    c->peer_id = 0;
    uv_tcp_init(loop_, &c->tcp);
    c->tcp.data = c;
    open_handles_++;
    if (uv_accept(reinterpret_cast<uv_stream_t *>(&listener_),
                  reinterpret_cast<uv_stream_t *>(&c->tcp)) != 0) {
        connection_lost(c, "");
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[64] = "?";
    if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<struct sockaddr *>(&ss), &len) == 0 &&
        ss.ss_family == AF_INET) {
        auto *in = reinterpret_cast<struct sockaddr_in *>(&ss);
        uv_ip4_name(in, host, sizeof(host));
        c->peer_address = std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    }
    set_socket_options(&c->tcp);
    inbound_.push_back(c);
    c->state = Connection::Handshake;
    uv_read_start(reinterpret_cast<uv_stream_t *>(&c->tcp), alloc_read, on_read);
}

void NodeTransport::start()
{
    uv_tcp_init(loop_, &listener_);
    listener_.data = this;
    listener_initialized_ = true;
    open_handles_++;
    struct sockaddr_in addr;
    const NodeAddress &self = config_.self();
    uv_ip4_addr(self.host.c_str(), self.port, &addr);
    int rv = uv_tcp_bind(&listener_, reinterpret_cast<struct sockaddr *>(&addr), 0);
    if (rv == 0)
        rv = uv_listen(reinterpret_cast<uv_stream_t *>(&listener_), 64, [](uv_stream_t *s, int status) {
            if (status == 0)
                static_cast<NodeTransport *>(s->data)->on_accept();
        });
    if (rv != 0)
        throw std::runtime_error("atomix transport: cannot listen on " + self.address() + ": " +
                                 uv_strerror(rv));
    uv_timer_init(loop_, &liveness_);
    liveness_.data = this;
    liveness_initialized_ = true;
    open_handles_++;
    if (!external_liveness_)
        uv_timer_start(&liveness_, [](uv_timer_t *timer) {
            auto *t = static_cast<NodeTransport *>(timer->data);
            t->read_digest_links();
            t->check_liveness();
        }, kPingAfterMs, kPingAfterMs);
    for (auto &kv : peers_) {
        Peer &peer = *kv.second;
        uv_timer_init(loop_, &peer.redial);
        peer.redial.data = &peer;
        peer.redial_initialized = true;
        open_handles_++;
        dial(peer, kRoleMain);
        if (digest_links_) {
            uv_timer_init(loop_, &peer.digest_redial);
            peer.digest_redial.data = &peer;
            peer.digest_redial_initialized = true;
            open_handles_++;
            dial(peer, kRoleDigest);
        }
    }
}

void NodeTransport::close()
{
    if (closing_)
        return;
    closing_ = true;
    for (auto &kv : peers_) {
        Peer &peer = *kv.second;
        if (peer.out)
            connection_lost(peer.out, "");
        if (peer.digest_out)
            connection_lost(peer.digest_out, "");
        if (peer.redial_initialized)
            uv_close(reinterpret_cast<uv_handle_t *>(&peer.redial), [](uv_handle_t *h) {
                static_cast<Peer *>(h->data)->transport->open_handles_--;
            });
        if (peer.digest_redial_initialized)
            uv_close(reinterpret_cast<uv_handle_t *>(&peer.digest_redial), [](uv_handle_t *h) {
                static_cast<Peer *>(h->data)->transport->open_handles_--;
            });
    }
    std::vector<Connection *> inbound = inbound_;
    for (Connection *c : inbound)
        connection_lost(c, "");
    if (liveness_initialized_)
        uv_close(reinterpret_cast<uv_handle_t *>(&liveness_), [](uv_handle_t *h) {
            static_cast<NodeTransport *>(h->data)->open_handles_--;
        });
    if (listener_initialized_)
        uv_close(reinterpret_cast<uv_handle_t *>(&listener_), [](uv_handle_t *h) {
            static_cast<NodeTransport *>(h->data)->open_handles_--;
        });
}

/* ---- liveness ---- */

void NodeTransport::check_liveness()
{
    if (closing_ || !liveness_on_)
        return;
    uint64_t now = uv_now(loop_);
    std::vector<std::pair<Connection *, std::string>> dead;
    for (auto &kv : peers_) {
        /* the digest link first: a digest it carries spares the main link
         * its ping */
        for (Connection *c : {kv.second->digest_out, kv.second->out}) {
            if (!c || c->closing)
                continue;
            if (c->state != Connection::Ready) {
                if (now - c->created_ms > kSilentAfterMs)
                    dead.push_back({c, "no handshake within " + std::to_string(kSilentAfterMs) + " ms"});
            } else if (!c->held_out.empty() && now - c->held_out_since_ms > kTcpUserTimeoutMs) {
                /* what TCP_USER_TIMEOUT does to a real link that drops */
                dead.push_back({c, "nothing acknowledged for " + std::to_string(kTcpUserTimeoutMs) + " ms"});
            } else if (now - c->last_send_ms >= kPingAfterMs) {
                Connection *d = kv.second->digest_out;
                bool digests_speak = c->role == kRoleMain && d && d->state == Connection::Ready &&
                                     !d->closing && now - d->last_send_ms < kPingAfterMs;
                if (!digests_speak)
                    write_on(c, FrameType::Ping, nullptr, 0, nullptr, 0);
            }
        }
    }
    for (Connection *c : inbound_) {
        if (c->closing)
            continue;
        uint64_t since = c->state == Connection::Ready ? c->last_recv_ms : c->created_ms;
        /* a main link is as alive as its peer's digest link */
        if (c->state == Connection::Ready && c->role == kRoleMain)
            since = std::max(since, heard_on_digest_link_ms(c->peer_id));
        if (now - since > kSilentAfterMs)
            dead.push_back({c, "nothing heard for " + std::to_string(kSilentAfterMs) + " ms"});
    }
    for (auto &d : dead) {
        dead_links_++;
        connection_lost(d.first, d.second);
    }
}

uint64_t NodeTransport::heard_on_digest_link_ms(uint32_t peer) const
{
    uint64_t heard = 0;
    for (const Connection *c : inbound_)
        if (c->role == kRoleDigest && c->peer_id == peer && c->state == Connection::Ready &&
            !c->closing)
            heard = std::max(heard, c->last_recv_ms);
    return heard;
}

/* ---- digest links: read at the owner's ticks ---- */

void NodeTransport::read_digest_links()
{
    if (!digest_links_ || closing_)
        return;
    std::vector<Connection *> links;
    for (Connection *c : inbound_)
        if (c->role == kRoleDigest && c->state == Connection::Ready && !c->closing)
            links.push_back(c);
    /* a hook may close connections: each is checked again before reading */
    for (Connection *c : links)
        if (std::find(inbound_.begin(), inbound_.end(), c) != inbound_.end() && !c->closing)
            read_digest_link(c);
}

/* When did the bytes of this read reach the kernel?  SO_TIMESTAMPNS gives
 * the receive time of the last segment read, on CLOCK_REALTIME; its age,
 * taken on the same clock right now, is moved to the loop's clock.  The
 * result is kept within (the link's previous read, now]: the bytes came
 * after that read drained the socket, and a wall clock stepped in between
 * must not place them in the future.  Without a timestamp they count as
 * having come right after the previous read — the earliest they can have,
 * so a silent peer is never noticed late. */
static uint64_t arrival_ms(const struct msghdr &msg, uint64_t previous_read_ms, uint64_t now_ms)
{
    uint64_t heard = previous_read_ms;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(const_cast<struct msghdr *>(&msg), cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS)
            continue;
        struct timespec ts, real;
        memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
        clock_gettime(CLOCK_REALTIME, &real);
        int64_t age_ns = (static_cast<int64_t>(real.tv_sec) - ts.tv_sec) * 1000000000LL +
                         (real.tv_nsec - ts.tv_nsec);
        int64_t age_ms = std::max<int64_t>(age_ns / 1000000, 0);
        heard = now_ms > static_cast<uint64_t>(age_ms) ? now_ms - static_cast<uint64_t>(age_ms) : 0;
    }
    return std::min(std::max(heard, previous_read_ms), now_ms);
}

void NodeTransport::read_digest_link(Connection *c)
{
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t *>(&c->tcp), &fd) != 0)
        return;
    char *buffer = read_buffer;
    constexpr size_t kBufferBytes = sizeof(read_buffer);
    uint64_t now = uv_now(loop_);
    /* bounded: a peer that floods its digest link is read on later ticks */
    for (int reads = 0; reads < 16 && !c->closing; reads++) {
        struct iovec iov;
        iov.iov_base = buffer;
        iov.iov_len = kBufferBytes;
        alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(struct timespec)) + 64];
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
        digest_reads_++;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            connection_lost(c, strerror(errno));
            return;
        }
        if (n == 0) {
            connection_lost(c, "closed by peer");
            return;
        }
        uint64_t heard = arrival_ms(msg, c->last_read_ms, now);
        if (holds_in(c->peer_id))
            c->held_in.append(buffer, static_cast<size_t>(n));
        else
            received(c, buffer, static_cast<size_t>(n), heard);
        if (static_cast<size_t>(n) < kBufferBytes)
            break; /* drained */
    }
    c->last_read_ms = now;
}

/* ---- test-only faults ---- */

static bool listed(const std::vector<uint32_t> &peers, uint32_t peer)
{
    return std::find(peers.begin(), peers.end(), peer) != peers.end();
}

bool NodeTransport::holds_out(uint32_t peer) const { return listed(faults_.hold_outbound, peer); }
bool NodeTransport::holds_in(uint32_t peer) const { return listed(faults_.hold_inbound, peer); }

void NodeTransport::set_faults(const TransportFaults &faults)
{
    TransportFaults before = faults_;
    faults_ = faults;
    std::vector<Connection *> all = inbound_;
    for (auto &kv : peers_) {
        if (kv.second->out)
            all.push_back(kv.second->out);
        if (kv.second->digest_out)
            all.push_back(kv.second->digest_out);
    }
    for (Connection *c : all) {
        if (c->closing || c->peer_id == 0)
            continue;
        bool released = (listed(before.hold_outbound, c->peer_id) && !holds_out(c->peer_id)) ||
                        (listed(before.hold_inbound, c->peer_id) && !holds_in(c->peer_id));
        if (!released)
            continue;
        if (faults.reset_on_release)
            connection_lost(c, "reset (atomix.test_hold_release)");
        else
            release_held(c);
    }
}

/* Sends and delivers what a hold kept back, in order. */
void NodeTransport::release_held(Connection *c)
{
    if (!holds_out(c->peer_id) && !c->held_out.empty()) {
        std::vector<std::string> frames;
        frames.swap(c->held_out);
        about_to_write();
        for (std::string &f : frames)
            if (c->closing || !write_bytes(&c->tcp, std::move(f))) {
                connection_lost(c, "write failed");
                return;
            }
    }
    if (!holds_in(c->peer_id) && !c->held_in.empty()) {
        std::string bytes;
        bytes.swap(c->held_in);
        received(c, bytes.data(), bytes.size());
    }
}

} // namespace atomix
