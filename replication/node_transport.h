/*
 * node_transport.h — the node-to-node transport: one TCP port per node,
 * carrying every partition's Raft traffic and forwarded client requests.
 *
 * Each node dials every peer once and sends all its traffic to that peer on
 * that connection; what a peer sends arrives on the connection the peer
 * dialed.  TCP_NODELAY is set on every socket (Nagle plus delayed ACK stalls
 * Raft round trips by ~40 ms otherwise).
 *
 * Before anything else is accepted both sides prove they hold the cluster
 * secret (challenge-response with HMAC-SHA256 over fresh nonces, so the
 * secret never crosses the wire); a peer that fails is logged and dropped.
 *
 * Wire: every message is a frame  u32 length | u8 type | payload  (length
 * counts type and payload, little-endian).  Handshake frames come first:
 *   client → HELLO      magic "ATMXNODE", u8 version (2 since atomix 0.5: another
 *                       version is refused, see kVersion), u32 node id, 16-byte nonce C,
 *                       [u8 role: kRoleMain when absent, kRoleDigest]
 *   server → CHALLENGE  u32 node id, 16-byte nonce S, HMAC(secret, "S"|C|S|server id)
 *   client → PROOF      HMAC(secret, "C"|S|C|client id)
 * then RAFT (u32 group | encoded raft message), FORWARD and FORWARD_REPLY
 * (opaque to the transport; the worker defines them), and PING (empty).
 *
 * Digest links.  An idle node's only traffic is the digests of hibernation
 * (FrameType::Digest, every kDigestEveryMs), and each one woke its receiver
 * between its own ticks, which only read them then.  With digest links on
 * (set_digest_links, the raft worker), each node dials every peer a second
 * time, with HELLO's role byte set to kRoleDigest, and sends its digests
 * there.  The receiver does not poll that connection: read_digest_links(),
 * called at its tick, reads whatever came (recvmsg, no wait) and delivers
 * it, each frame with the time its bytes reached the kernel
 * (frame_heard_ms(), from SO_TIMESTAMPNS), so a silent peer is noticed no
 * later than before.  A digest link carries only DIGEST and PING.  Digests
 * go on the main link whenever the digest link is not up (a peer that does
 * not speak it refuses the HELLO; the dialer then retries slowly), and the
 * main link needs no PING while the digest link carries traffic: the peer
 * is heard on either (see below).
 *
 * Liveness: a link that silently drops (a firewall, a frozen peer) must not
 * count as connected, or requests wait on it forever.  Every connection has
 * TCP_USER_TIMEOUT (unacknowledged data fails the socket) and keep-alive
 * probes; on top, the dialing side sends PING when it has sent nothing for a
 * while, and the accepting side closes a connection it has heard nothing on
 * for kSilentAfterMs, as does a dialer whose handshake does not finish in
 * that time.  With a digest link up, a main link is pinged only when
 * nothing went to that peer on either for kPingAfterMs, and an inbound main
 * link counts as heard while the same peer's digest link is heard: a frozen
 * peer falls silent on both.  A main link that died alone (its flow lost,
 * the other not) is still found: TCP_USER_TIMEOUT bounds its keep-alive
 * probes, and any frame on it leaves data unacknowledged.  A closed connection is redialed; each newly authenticated
 * connection to a peer bumps its link generation, which the worker uses to
 * resend only on a new connection, never on the one it is waiting on.
 *
 * Test-only faults (atomix.test_hold_*; never on by default): frames to or
 * from chosen peers are held as a dropping firewall would while TCP
 * retransmits, then released in order or reset.
 *
 * Pure C++ over libuv: the HMAC and randomness come in as functions, so the
 * worker can use Postgres' implementations and tests can use anything.
 */
#ifndef ATOMIX_NODE_TRANSPORT_H
#define ATOMIX_NODE_TRANSPORT_H

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "cluster_config.h"

namespace atomix {

enum class FrameType : uint8_t {
    Hello = 1,
    Challenge = 2,
    Proof = 3,
    Raft = 10,
    Forward = 11,
    ForwardReply = 12,
    Ping = 13,
    /* linearizable reads (read_index.h) */
    ReadConfirm = 14,
    ReadConfirmAck = 15,
    ReadIndexAsk = 16,
    ReadIndexAnswer = 17,
    /* where this node's partitions stand, for hibernation (hibernation.h) */
    Digest = 18,
    /* a voter's promise not to elect anyone for a while: read leases (read_index.h) */
    VotePromise = 19,
};

/* Liveness timing (see the file comment). */
constexpr uint64_t kPingAfterMs = 500;
constexpr uint64_t kSilentAfterMs = 2000;
constexpr unsigned kTcpUserTimeoutMs = 3000;
/* A digest link that failed is redialed this much later (a peer refusing
 * digest links costs a handshake every few seconds, not four a second). */
constexpr uint64_t kDigestRedialMs = 2000;

/* HELLO's optional last byte: what the dialed connection is for. */
constexpr uint8_t kRoleMain = 0;
constexpr uint8_t kRoleDigest = 1;

/* Test-only network faults: peers whose frames are held. */
struct TransportFaults {
    std::vector<uint32_t> hold_outbound; /* frames to these peers are held */
    std::vector<uint32_t> hold_inbound;  /* frames from these peers are held */
    bool reset_on_release = false;       /* release by resetting, dropping what was held */
    bool operator==(const TransportFaults &o) const
    {
        return hold_outbound == o.hold_outbound && hold_inbound == o.hold_inbound &&
               reset_on_release == o.reset_on_release;
    }
};

constexpr size_t kNonceBytes = 16;
constexpr size_t kMacBytes = 32;
constexpr uint32_t kMaxFrameBytes = 512u * 1024 * 1024;

struct TransportHooks {
    /* HMAC-SHA256(key, message) → 32 bytes */
    std::function<std::string(const std::string &key, const std::string &message)> hmac;
    std::function<std::string(size_t n)> random_bytes;
    /* A frame from an authenticated peer (never a handshake frame). */
    std::function<void(uint32_t peer, FrameType type, const char *payload, size_t len)> on_frame;
    /* Operational messages: level 0 = info, 1 = warning. */
    std::function<void(int level, const std::string &message)> log;
    /* Called before any bytes are handed to a socket (a batch flushed, an
     * unbatched frame, held frames released): the worker publishes its read
     * leases' commit indexes there, before any peer can learn them. */
    std::function<void()> before_write;
};

class NodeTransport {
  public:
    NodeTransport(uv_loop_t *loop, const ClusterConfig &config, std::string secret,
                  TransportHooks hooks);
    ~NodeTransport();
    NodeTransport(const NodeTransport &) = delete;
    NodeTransport &operator=(const NodeTransport &) = delete;

    /* Listens on this node's address and starts dialing every peer.  Throws
     * std::runtime_error if the port cannot be bound. */
    void start();

    /* Queues a frame to `peer`.  False when there is no authenticated
     * connection to it right now (the frame is dropped; Raft retries). */
    bool send(uint32_t peer, FrameType type, const std::string &payload);
    bool send(uint32_t peer, FrameType type, const char *head, size_t head_len, const char *body,
              size_t body_len);

    /* Batching: frames to a peer wait in its connection's buffer until
     * flush(), which writes each connection's frames with one write — one
     * syscall per peer per flush instead of one per frame.  Off by default
     * (every send is written at once); the worker turns it on and flushes
     * at fixed points of its loop turn (docs/architecture.md). */
    void set_batching(bool on);
    void flush();
    /* write syscalls issued for frames (uv_write calls), and frames sent */
    uint64_t writes() const { return writes_; }
    uint64_t frames_sent() const { return frames_sent_; }

    bool connected(uint32_t peer) const;
    /* Bumped each time a new connection to peer is authenticated (0: never). */
    uint64_t link_generation(uint32_t peer) const;
    /* Connections closed because they went silent or unacknowledged. */
    uint64_t dead_links() const { return dead_links_; }

    /* Test-only: hold frames to / from peers; a peer leaving a list has its
     * held frames released in order (or its connections reset). */
    void set_faults(const TransportFaults &faults);
    /* Off only in a planted-bug build (src/core/planted_bugs.h): no pings, no
     * silence or user timeouts — the transport of atomix 0.1. */
    void set_liveness(bool on) { liveness_on_ = on; }
    /* The owner calls check_liveness() at least every kPingAfterMs instead
     * of the transport's own timer (the raft worker folds it into its Raft
     * tick: one wake-up fewer several times a second).  Before start(). */
    void set_external_liveness(bool on) { external_liveness_ = on; }
    /* µs since the Unix epoch of the last frame received from peer, or 0. */
    int64_t last_contact_us(uint32_t peer) const;

    /* Digest links (file comment).  Off by default: no digest link is
     * dialed and one a peer dials is refused, as by a node that predates
     * them.  Before start(). */
    void set_digest_links(bool on) { digest_links_ = on; }
    /* Reads and delivers what came on every inbound digest link. */
    void read_digest_links();
    /* Our digest link to peer is authenticated and open. */
    bool digest_link_up(uint32_t peer) const;
    /* During on_frame: when the frame's bytes reached this host, on the
     * loop's clock (uv_now, ms).  Now for a frame read as it came; for one
     * read later from a digest link, the kernel's receive time, kept within
     * (the link's previous read, now]. */
    uint64_t frame_heard_ms() const { return frame_heard_ms_; }
    /* recvmsg calls made by read_digest_links() */
    uint64_t digest_reads() const { return digest_reads_; }

    /* Closes every handle; closed() is true once libuv released them. */
    void close();
    bool closed() const { return open_handles_ == 0 && closing_; }

    /* Internals, public only for the libuv callbacks in node_transport.cpp. */
    struct Connection; /* one TCP stream, either direction */
    struct Peer;       /* a node we dial */
    void dial(Peer &peer, uint8_t role);
    void on_accept();
    void connection_lost(Connection *c, const std::string &why);
    void handle_frame(Connection *c, FrameType type, const char *p, size_t n);
    /* heard_ms: when the bytes reached this host (loop clock); 0: now */
    void received(Connection *c, const char *data, size_t len, uint64_t heard_ms = 0);
    void write_on(Connection *c, FrameType type, const char *head, size_t head_len,
                  const char *body, size_t body_len);
    void check_liveness();
    bool holds_out(uint32_t peer) const;
    bool holds_in(uint32_t peer) const;
    const ClusterConfig &config() const { return config_; }
    std::string random_bytes(size_t n) { return hooks_.random_bytes(n); }
    int open_handles_ = 0;

  private:
    void schedule_redial(Peer &peer, uint8_t role);
    void read_digest_link(Connection *c);
    uint64_t heard_on_digest_link_ms(uint32_t peer) const;
    Connection *link_for(const Peer &peer, FrameType type) const;
    void connection_ready(Connection *c);
    void handle_handshake(Connection *c, FrameType type, const char *p, size_t n);
    std::string server_proof(const std::string &c_nonce, const std::string &s_nonce,
                             uint32_t server_id) const;
    std::string client_proof(const std::string &c_nonce, const std::string &s_nonce,
                             uint32_t client_id) const;

    uv_loop_t *loop_;
    ClusterConfig config_;
    std::string secret_;
    TransportHooks hooks_;
    uv_tcp_t listener_;
    bool listener_initialized_ = false;
    bool closing_ = false;
    std::map<uint32_t, std::unique_ptr<Peer>> peers_;
    std::vector<Connection *> inbound_;
    std::map<uint32_t, int64_t> last_contact_;
    std::map<uint32_t, bool> refused_logged_;
    std::map<uint32_t, bool> version_refused_logged_; /* a peer of another atomix build */
    std::map<uint32_t, uint64_t> generation_;
    uint64_t dead_links_ = 0;
    uv_timer_t liveness_;
    bool liveness_initialized_ = false;
    TransportFaults faults_;
    bool liveness_on_ = true;
    bool external_liveness_ = false;
    void release_held(Connection *c);
    void flush_connection(Connection *c);
    void about_to_write();
    bool batching_ = false;
    std::vector<Connection *> unflushed_; /* connections with a non-empty batch */
    uint64_t writes_ = 0;
    uint64_t frames_sent_ = 0;
    bool digest_links_ = false;
    uint64_t frame_heard_ms_ = 0;
    uint64_t digest_reads_ = 0;
};

} // namespace atomix

#endif
