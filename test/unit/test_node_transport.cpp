/*
 * test_node_transport.cpp — the node-to-node transport (replication/
 * node_transport.h) over real loopback TCP.
 *
 * Two or three NodeTransport instances share one libuv loop in this process,
 * each listening on a free 127.0.0.1 port.  The tests check the handshake
 * (both ways, against the protocol the header documents, and against a peer
 * holding another secret), framing (every non-handshake type, order, an
 * 8 MiB frame, thousands of small ones), loss and automatic reconnection,
 * hostile input on the listening port, and a clean shutdown: every test ends
 * with close(), closed() and uv_loop_close() == 0, under ASan/LSan.
 *
 * Every wait is bounded: the loop runs in UV_RUN_ONCE steps woken by a 5 ms
 * ticker, until a condition holds or a deadline passes.
 *
 * HMAC-SHA256 is a small self-contained implementation here (checked against
 * FIPS 180-2 and RFC 4231 vectors), so the test needs nothing but libuv.
 */
#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

extern "C" {
#include <cmocka.h>
}

#include "cluster_config.h"
#include "node_transport.h"

using namespace atomix;

namespace {

/* ---- SHA-256 / HMAC-SHA256 (FIPS 180-4, RFC 2104) ---- */

const uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

std::string sha256(const std::string &msg)
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::string m = msg;
    uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
    m.push_back(static_cast<char>(0x80));
    while (m.size() % 64 != 56)
        m.push_back('\0');
    for (int i = 7; i >= 0; i--)
        m.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    for (size_t off = 0; off < m.size(); off += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++) {
            const auto *p = reinterpret_cast<const uint8_t *>(m.data() + off + 4 * i);
            w[i] = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = k + S1 + ch + kSha256K[i] + w[i];
            uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = S0 + maj;
            k = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
    }
    std::string out;
    for (uint32_t v : h)
        for (int i = 3; i >= 0; i--)
            out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return out;
}

std::string hmac_sha256(const std::string &key, const std::string &message)
{
    std::string k = key.size() > 64 ? sha256(key) : key;
    k.resize(64, '\0');
    std::string ipad(64, '\0'), opad(64, '\0');
    for (int i = 0; i < 64; i++) {
        ipad[i] = static_cast<char>(k[i] ^ 0x36);
        opad[i] = static_cast<char>(k[i] ^ 0x5c);
    }
    return sha256(opad + sha256(ipad + message));
}

std::string hex(const std::string &s)
{
    static const char *digits = "0123456789abcdef";
    std::string out;
    for (unsigned char ch : s) {
        out.push_back(digits[ch >> 4]);
        out.push_back(digits[ch & 15]);
    }
    return out;
}

std::string random_bytes(size_t n)
{
    static std::random_device rd;
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++)
        s[i] = static_cast<char>(rd() & 0xff);
    return s;
}

/* ---- wire helpers (the protocol as node_transport.h documents it) ---- */

void put_u32(std::string &s, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t get_u32(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
    return v;
}

std::string frame(uint8_t type, const std::string &payload)
{
    std::string f;
    put_u32(f, static_cast<uint32_t>(1 + payload.size()));
    f.push_back(static_cast<char>(type));
    return f + payload;
}

std::string hello_payload(uint32_t id, const std::string &nonce, const std::string &magic = "ATMXNODE",
                          uint8_t version = 2)
{
    std::string p = magic;
    p.push_back(static_cast<char>(version));
    put_u32(p, id);
    return p + nonce;
}

/* ---- ports ---- */

/* A port that was free a moment ago: bind to port 0, read it, close. */
uint16_t free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    assert_int_equal(bind(fd, reinterpret_cast<struct sockaddr *>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, reinterpret_cast<struct sockaddr *>(&a), &len), 0);
    ::close(fd);
    return ntohs(a.sin_port);
}

bool contains(const std::string &haystack, const std::string &needle)
{
    return haystack.find(needle) != std::string::npos;
}

/* ---- the loop ---- */

struct Loop {
    uv_loop_t loop;
    uv_timer_t ticker;

    Loop()
    {
        assert_int_equal(uv_loop_init(&loop), 0);
        uv_timer_init(&loop, &ticker);
        /* keeps UV_RUN_ONCE from blocking for longer than 5 ms */
        uv_timer_start(&ticker, [](uv_timer_t *) {}, 5, 5);
    }

    /* Runs the loop until pred() holds; false if `seconds` pass first. */
    bool run_until(const std::function<bool()> &pred, double seconds)
    {
        uint64_t deadline = uv_hrtime() + static_cast<uint64_t>(seconds * 1e9);
        while (!pred()) {
            if (uv_hrtime() > deadline)
                return false;
            uv_run(&loop, UV_RUN_ONCE);
        }
        return true;
    }

    /* Runs the loop for `seconds`, checking invariant() before every step. */
    void run_for(double seconds, const std::function<void()> &invariant)
    {
        uint64_t deadline = uv_hrtime() + static_cast<uint64_t>(seconds * 1e9);
        while (uv_hrtime() < deadline) {
            invariant();
            uv_run(&loop, UV_RUN_ONCE);
        }
        invariant();
    }

    /* Closes the ticker and checks that nothing else is left open. */
    void finish()
    {
        uv_close(reinterpret_cast<uv_handle_t *>(&ticker), nullptr);
        bool drained = run_until([&] { return !uv_loop_alive(&loop); }, 5);
        if (!drained)
            uv_walk(&loop,
                    [](uv_handle_t *h, void *) {
                        fprintf(stderr, "left open: handle type %s, closing %d\n",
                                uv_handle_type_name(uv_handle_get_type(h)), uv_is_closing(h));
                    },
                    nullptr);
        assert_true(drained);
        assert_int_equal(uv_loop_close(&loop), 0);
    }
};

/* ---- transports under test ---- */

struct Frame {
    uint32_t peer;
    FrameType type;
    std::string payload;
};

struct Node {
    uint32_t id = 0;
    uint16_t port = 0;
    std::string secret;
    std::unique_ptr<NodeTransport> t;
    std::vector<Frame> frames;
    std::vector<std::string> logs;
    /* when set, frames are only counted and checked through this */
    std::function<void(uint32_t, FrameType, const char *, size_t)> on_frame;
    /* before_write: how often it ran, and the transport's write count then */
    uint64_t before_writes = 0, writes_announced = 0;
    /* NodeTransport::set_digest_links and set_external_liveness, applied
     * at start (with external liveness the test reads digest links and
     * checks liveness itself) */
    bool digest_links = false;
    bool external_liveness = false;
    /* frame_heard_ms() of every frame received, in order */
    std::vector<uint64_t> heard_ms;

    std::string address() const { return "127.0.0.1:" + std::to_string(port); }

    size_t logs_matching(const std::vector<std::string> &needles) const
    {
        size_t n = 0;
        for (const std::string &l : logs) {
            bool all = true;
            for (const std::string &needle : needles)
                all = all && contains(l, needle);
            n += all;
        }
        return n;
    }

    void dump_logs() const
    {
        for (const std::string &l : logs)
            fprintf(stderr, "  node %u log: %s\n", id, l.c_str());
    }
};

struct Cluster {
    Loop loop;
    std::vector<std::unique_ptr<Node>> nodes;
    std::string initial_cluster;

    /* ids 1..n on fresh ports; secrets[i] (default "s3cret") for node i+1 */
    explicit Cluster(size_t n, const std::vector<std::string> &secrets = {})
    {
        for (size_t i = 0; i < n; i++) {
            auto node = std::make_unique<Node>();
            node->id = static_cast<uint32_t>(i + 1);
            node->port = free_port();
            node->secret = i < secrets.size() ? secrets[i] : "s3cret";
            if (i)
                initial_cluster += ",";
            initial_cluster += std::to_string(node->id) + "=" + node->address();
            nodes.push_back(std::move(node));
        }
        /* distinct ports (free_port could in theory hand one out twice) */
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                assert_true(nodes[i]->port != nodes[j]->port);
    }

    Node &node(uint32_t id) { return *nodes[id - 1]; }

    void start(uint32_t id)
    {
        Node *n = &node(id);
        assert_null(n->t.get());
        ClusterConfig config = ClusterConfig::parse(initial_cluster, id, n->address(), 3);
        TransportHooks hooks;
        hooks.hmac = hmac_sha256;
        hooks.random_bytes = random_bytes;
        hooks.on_frame = [n](uint32_t peer, FrameType type, const char *p, size_t len) {
            n->heard_ms.push_back(n->t->frame_heard_ms());
            if (n->on_frame)
                n->on_frame(peer, type, p, len);
            else
                n->frames.push_back(Frame{peer, type, std::string(p, len)});
        };
        hooks.log = [n](int level, const std::string &message) {
            assert_true(level == 0 || level == 1);
            n->logs.push_back(message);
        };
        hooks.before_write = [n]() {
            n->before_writes++;
            n->writes_announced = n->t ? n->t->writes() : 0;
        };
        n->t = std::make_unique<NodeTransport>(&loop.loop, config, n->secret, hooks);
        n->t->set_digest_links(n->digest_links);
        n->t->set_external_liveness(n->external_liveness);
        n->t->start();
    }

    void start_all()
    {
        for (auto &n : nodes)
            start(n->id);
    }

    /* Closes one node's transport, waits until libuv released its handles
     * and destroys it. */
    void stop(uint32_t id)
    {
        Node &n = node(id);
        assert_non_null(n.t.get());
        n.t->close();
        assert_true(loop.run_until([&] { return n.t->closed(); }, 5));
        n.t.reset();
    }

    bool connected(uint32_t a, uint32_t b) { return node(a).t->connected(b); }

    bool all_connected(const std::vector<uint32_t> &ids)
    {
        for (uint32_t a : ids)
            for (uint32_t b : ids)
                if (a != b && !(node(a).t && node(a).t->connected(b)))
                    return false;
        return true;
    }

    bool wait_connected(const std::vector<uint32_t> &ids, double seconds = 5)
    {
        bool ok = loop.run_until([&] { return all_connected(ids); }, seconds);
        if (!ok)
            for (auto &n : nodes)
                n->dump_logs();
        return ok;
    }

    /* Every node down, the loop empty and closed. */
    void finish()
    {
        for (auto &n : nodes)
            if (n->t)
                n->t->close();
        assert_true(loop.run_until(
            [&] {
                for (auto &n : nodes)
                    if (n->t && !n->t->closed())
                        return false;
                return true;
            },
            5));
        for (auto &n : nodes) {
            assert_false(n->t && n->t->send(n->id == 1 ? 2 : 1, FrameType::Raft, "late"));
            n->t.reset();
        }
        loop.finish();
    }
};

/* ---- a raw TCP client, for speaking (or mangling) the protocol by hand ---- */

struct RawClient {
    uv_tcp_t tcp;
    uv_connect_t req;
    int connect_status = 1; /* 1: pending */
    bool eof = false;       /* EOF or a read error: the server closed it */
    bool closed = false;
    std::string rbuf;

    void connect(uv_loop_t *loop, uint16_t port)
    {
        uv_tcp_init(loop, &tcp);
        tcp.data = this;
        req.data = this;
        struct sockaddr_in a;
        uv_ip4_addr("127.0.0.1", port, &a);
        assert_int_equal(uv_tcp_connect(&req, &tcp, reinterpret_cast<struct sockaddr *>(&a),
                                        [](uv_connect_t *r, int status) {
                                            auto *self = static_cast<RawClient *>(r->data);
                                            self->connect_status = status;
                                            if (status != 0)
                                                return;
                                            uv_read_start(
                                                reinterpret_cast<uv_stream_t *>(&self->tcp),
                                                [](uv_handle_t *, size_t, uv_buf_t *buf) {
                                                    static char b[64 * 1024];
                                                    *buf = uv_buf_init(b, sizeof(b));
                                                },
                                                [](uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
                                                    auto *c = static_cast<RawClient *>(s->data);
                                                    if (n < 0) {
                                                        c->eof = true;
                                                        uv_read_stop(s);
                                                    } else {
                                                        c->rbuf.append(buf->base, size_t(n));
                                                    }
                                                });
                                        }),
                         0);
    }

    void write(const std::string &bytes)
    {
        struct W {
            uv_write_t w;
            std::string data;
        };
        W *w = new W();
        w->data = bytes;
        w->w.data = w;
        uv_buf_t buf = uv_buf_init(&w->data[0], static_cast<unsigned int>(w->data.size()));
        int rv = uv_write(&w->w, reinterpret_cast<uv_stream_t *>(&tcp), &buf, 1,
                          [](uv_write_t *r, int) { delete static_cast<W *>(r->data); });
        if (rv != 0) {
            delete w; /* the server may already have hung up */
            eof = true;
        }
    }

    /* The next complete frame in rbuf (type, payload), or false. */
    bool next_frame(uint8_t &type, std::string &payload)
    {
        if (rbuf.size() < 5)
            return false;
        uint32_t len = get_u32(rbuf.data());
        if (rbuf.size() < 4 + size_t(len))
            return false;
        type = static_cast<uint8_t>(rbuf[4]);
        payload = rbuf.substr(5, len - 1);
        rbuf.erase(0, 4 + size_t(len));
        return true;
    }

    void close()
    {
        uv_close(reinterpret_cast<uv_handle_t *>(&tcp),
                 [](uv_handle_t *h) { static_cast<RawClient *>(h->data)->closed = true; });
    }
};

/* Runs a raw client to the end of a handshake with `server` (whose id is
 * server_id) claiming `client_id`, proving with `secret`.  Returns false if
 * the server's CHALLENGE does not check out under `check_secret`. */
bool raw_handshake(Cluster &cl, RawClient &c, uint32_t server_id, uint32_t client_id,
                   const std::string &check_secret, const std::string &proof_secret,
                   int role = -1 /* HELLO's role byte; -1: none, as a main link */)
{
    std::string cn = random_bytes(kNonceBytes);
    std::string hello = hello_payload(client_id, cn);
    if (role >= 0)
        hello.push_back(static_cast<char>(role));
    c.write(frame(1, hello));
    uint8_t type = 0;
    std::string payload;
    assert_true(cl.loop.run_until([&] { return c.eof || c.next_frame(type, payload); }, 5));
    assert_false(c.eof);
    assert_int_equal(type, static_cast<uint8_t>(FrameType::Challenge));
    assert_int_equal(payload.size(), 4 + kNonceBytes + kMacBytes);
    assert_int_equal(get_u32(payload.data()), server_id);
    std::string sn = payload.substr(4, kNonceBytes);
    assert_true(sn != cn);
    /* CHALLENGE carries HMAC(secret, "S"|C|S|server id) */
    std::string expect = "S" + cn + sn;
    put_u32(expect, server_id);
    if (payload.substr(4 + kNonceBytes) != hmac_sha256(check_secret, expect))
        return false;
    /* PROOF is HMAC(secret, "C"|S|C|client id) */
    std::string proof = "C" + sn + cn;
    put_u32(proof, client_id);
    c.write(frame(3, hmac_sha256(proof_secret, proof)));
    return true;
}

/* Deterministic payload for message `seq` of a stream (sizes 0..~700). */
std::string payload_for(uint32_t from, uint32_t to, uint32_t seq)
{
    std::mt19937 rng(from * 1000003u + to * 7919u + seq);
    size_t len = seq % 97 == 0 ? 0 : rng() % 700;
    std::string s;
    put_u32(s, seq);
    for (size_t i = 0; i < len; i++)
        s.push_back(static_cast<char>(rng()));
    return s;
}

FrameType type_for(uint32_t seq)
{
    static const FrameType types[] = {FrameType::Raft, FrameType::Forward, FrameType::ForwardReply};
    return types[seq % 3];
}

/* Sends `count` frames from a to b over all three types and checks that b
 * gets them all, intact and in order. */
void stream_and_check(Cluster &cl, uint32_t a, uint32_t b, uint32_t count)
{
    Node &rx = cl.node(b);
    size_t before = 0;
    for (const Frame &f : rx.frames)
        before += f.peer == a;
    for (uint32_t seq = 0; seq < count; seq++)
        assert_true(cl.node(a).t->send(b, type_for(seq), payload_for(a, b, seq)));
    assert_true(cl.loop.run_until(
        [&] {
            size_t n = 0;
            for (const Frame &f : rx.frames)
                n += f.peer == a;
            return n >= before + count;
        },
        10));
    uint32_t seq = 0;
    size_t skipped = 0;
    for (const Frame &f : rx.frames) {
        if (f.peer != a)
            continue;
        if (skipped < before) {
            skipped++;
            continue;
        }
        assert_true(f.type == type_for(seq));
        if (f.payload != payload_for(a, b, seq))
            fail_msg("frame %u from %u to %u damaged (%zu bytes)", seq, a, b, f.payload.size());
        seq++;
    }
    assert_int_equal(seq, count);
}

} // namespace

/* ---- the test's own HMAC ---- */

static void hmac_matches_reference_vectors(void **)
{
    assert_string_equal(hex(sha256("")).c_str(),
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_string_equal(hex(sha256("abc")).c_str(),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(
        hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).c_str(),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* RFC 4231 test cases 1, 2 and 6 (key longer than a block) */
    assert_string_equal(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")).c_str(),
                        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_string_equal(hex(hmac_sha256("Jefe", "what do ya want for nothing?")).c_str(),
                        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_string_equal(
        hex(hmac_sha256(std::string(131, '\xaa'),
                        "Test Using Larger Than Block-Size Key - Hash Key First"))
            .c_str(),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- connecting and framing ---- */

static void peers_connect_and_frames_arrive(void **)
{
    Cluster cl(3);
    cl.start_all();
    /* nothing is connected before the loop ran */
    assert_false(cl.connected(1, 2));
    assert_false(cl.node(1).t->send(2, FrameType::Raft, "too early"));
    assert_true(cl.wait_connected({1, 2, 3}));

    /* not peers: self and unknown ids */
    assert_false(cl.node(1).t->connected(1));
    assert_false(cl.node(1).t->connected(4));
    assert_false(cl.node(1).t->send(1, FrameType::Raft, "self"));
    assert_false(cl.node(1).t->send(4, FrameType::Raft, "nobody"));
    assert_int_equal(cl.node(1).t->last_contact_us(4), 0);

    /* each type, including an empty payload and head+body sends */
    int64_t t0 = cl.node(2).t->last_contact_us(1);
    assert_true(cl.node(1).t->send(2, FrameType::Raft, "raft-1"));
    assert_true(cl.node(1).t->send(2, FrameType::Forward, "fwd-1"));
    assert_true(cl.node(1).t->send(2, FrameType::ForwardReply, "reply-1"));
    assert_true(cl.node(1).t->send(2, FrameType::Raft, ""));
    std::string head;
    put_u32(head, 7); /* group */
    assert_true(cl.node(1).t->send(2, FrameType::Raft, head.data(), head.size(), "body", 4));
    assert_true(cl.node(1).t->send(2, FrameType::Forward, "head-only", 9, nullptr, 0));
    assert_true(cl.node(3).t->send(2, FrameType::ForwardReply, std::string("\0\xff\0", 3)));
    assert_true(cl.loop.run_until([&] { return cl.node(2).frames.size() >= 7; }, 5));
    std::vector<Frame> &f = cl.node(2).frames;
    assert_int_equal(f.size(), 7);
    std::vector<Frame> from1;
    for (const Frame &x : f)
        if (x.peer == 1)
            from1.push_back(x);
        else {
            assert_int_equal(x.peer, 3);
            assert_true(x.type == FrameType::ForwardReply);
            assert_true(x.payload == std::string("\0\xff\0", 3));
        }
    assert_int_equal(from1.size(), 6);
    assert_true(from1[0].type == FrameType::Raft && from1[0].payload == "raft-1");
    assert_true(from1[1].type == FrameType::Forward && from1[1].payload == "fwd-1");
    assert_true(from1[2].type == FrameType::ForwardReply && from1[2].payload == "reply-1");
    assert_true(from1[3].type == FrameType::Raft && from1[3].payload.empty());
    assert_true(from1[4].type == FrameType::Raft && from1[4].payload == head + "body");
    assert_true(from1[5].type == FrameType::Forward && from1[5].payload == "head-only");
    assert_true(cl.node(2).t->last_contact_us(1) >= t0);
    assert_true(cl.node(2).t->last_contact_us(3) > 0);
    assert_true(cl.node(1).frames.empty());
    assert_true(cl.node(3).frames.empty());
    f.clear();

    /* a clean start logs no warnings */
    for (auto &n : cl.nodes)
        for (const std::string &l : n->logs)
            if (contains(l, "secret") || contains(l, "refused a connection") ||
                contains(l, "refused node"))
                fail_msg("node %u logged: %s", n->id, l.c_str());

    cl.finish();
}

static void many_small_frames_in_order(void **)
{
    Cluster cl(3);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2, 3}));
    /* all six directions at once, so reads and writes interleave */
    const uint32_t count = 5000;
    for (uint32_t a = 1; a <= 3; a++)
        for (uint32_t b = 1; b <= 3; b++)
            if (a != b)
                for (uint32_t seq = 0; seq < count; seq++)
                    assert_true(cl.node(a).t->send(b, type_for(seq), payload_for(a, b, seq)));
    assert_true(cl.loop.run_until(
        [&] {
            for (auto &n : cl.nodes)
                if (n->frames.size() < 2 * count)
                    return false;
            return true;
        },
        20));
    for (uint32_t b = 1; b <= 3; b++) {
        std::vector<uint32_t> next(4, 0);
        assert_int_equal(cl.node(b).frames.size(), 2 * count);
        for (const Frame &f : cl.node(b).frames) {
            assert_true(f.peer >= 1 && f.peer <= 3 && f.peer != b);
            uint32_t seq = next[f.peer]++;
            assert_true(f.type == type_for(seq));
            if (f.payload != payload_for(f.peer, b, seq))
                fail_msg("frame %u from %u to %u damaged", seq, f.peer, b);
        }
    }
    /* and once more on the same connections */
    for (auto &n : cl.nodes)
        n->frames.clear();
    stream_and_check(cl, 2, 3, 1000);
    cl.finish();
}

static void large_frames_arrive_intact(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    std::mt19937 rng(42);
    std::string big(8u << 20, '\0');
    for (char &ch : big)
        ch = static_cast<char>(rng());
    std::string big2 = big;
    std::reverse(big2.begin(), big2.end());
    /* small, large, small, large (head+body), small: order is kept across
     * sizes, and frames are split and coalesced by TCP in every way */
    assert_true(cl.node(1).t->send(2, FrameType::Forward, "before"));
    assert_true(cl.node(1).t->send(2, FrameType::Raft, big));
    assert_true(cl.node(1).t->send(2, FrameType::ForwardReply, "between"));
    assert_true(cl.node(1).t->send(2, FrameType::Forward, big2.data(), 1000, big2.data() + 1000,
                                   big2.size() - 1000));
    assert_true(cl.node(1).t->send(2, FrameType::Raft, "after"));
    /* the other direction, concurrently */
    assert_true(cl.node(2).t->send(1, FrameType::ForwardReply, big2));
    assert_true(cl.loop.run_until(
        [&] { return cl.node(2).frames.size() >= 5 && cl.node(1).frames.size() >= 1; }, 20));
    std::vector<Frame> &f = cl.node(2).frames;
    assert_int_equal(f.size(), 5);
    assert_true(f[0].type == FrameType::Forward && f[0].payload == "before");
    assert_true(f[1].type == FrameType::Raft);
    assert_int_equal(f[1].payload.size(), big.size());
    assert_true(f[1].payload == big);
    assert_true(f[2].type == FrameType::ForwardReply && f[2].payload == "between");
    assert_true(f[3].type == FrameType::Forward);
    assert_true(f[3].payload == big2);
    assert_true(f[4].type == FrameType::Raft && f[4].payload == "after");
    assert_int_equal(cl.node(1).frames.size(), 1);
    assert_true(cl.node(1).frames[0].type == FrameType::ForwardReply);
    assert_true(cl.node(1).frames[0].payload == big2);
    cl.finish();
}

/* ---- authentication ---- */

static void wrong_secret_is_refused_both_ways(void **)
{
    /* node 3 holds another secret */
    Cluster cl(3, {"s3cret", "s3cret", "other secret"});
    cl.start_all();
    /* the correctly configured pair still works */
    assert_true(cl.wait_connected({1, 2}));
    /* both sides of both pairs notice: each logs when it dials the other */
    auto refused = [&](uint32_t who, uint32_t about) {
        return cl.node(who).logs_matching({"node " + std::to_string(about), "cluster_secret"}) > 0;
    };
    bool noticed = cl.loop.run_until(
        [&] { return refused(1, 3) && refused(2, 3) && refused(3, 1) && refused(3, 2); }, 5);
    if (!noticed)
        for (auto &n : cl.nodes)
            n->dump_logs();
    assert_true(noticed);
    /* and never connect, across several redial rounds */
    cl.loop.run_for(1.2, [&] {
        assert_false(cl.connected(1, 3));
        assert_false(cl.connected(2, 3));
        assert_false(cl.connected(3, 1));
        assert_false(cl.connected(3, 2));
    });
    assert_false(cl.node(3).t->send(1, FrameType::Raft, "let me in"));
    assert_false(cl.node(1).t->send(3, FrameType::Raft, "psst"));
    assert_true(cl.all_connected({1, 2}));
    stream_and_check(cl, 1, 2, 200);
    stream_and_check(cl, 2, 1, 200);
    /* nothing from or about node 3 was delivered */
    for (auto &n : cl.nodes)
        for (const Frame &fr : n->frames)
            assert_true(fr.peer != 3 && n->id != 3);
    assert_int_equal(cl.node(1).t->last_contact_us(3), 0);
    assert_int_equal(cl.node(3).t->last_contact_us(1), 0);
    /* the secret itself never shows up in a log line */
    for (auto &n : cl.nodes)
        for (const std::string &l : n->logs)
            assert_false(contains(l, "s3cret") || contains(l, "other secret"));
    cl.finish();
}

/* The protocol exactly as the header documents it, spoken by hand: a correct
 * client is accepted and its frames delivered; a client whose PROOF is made
 * with another secret is refused and logged by the server. */
static void handshake_follows_documented_protocol(void **)
{
    Cluster cl(3);
    cl.start(1);
    cl.start(2); /* node 3 is played by raw clients */

    RawClient good;
    good.connect(&cl.loop.loop, cl.node(1).port);
    assert_true(cl.loop.run_until([&] { return good.connect_status != 1; }, 5));
    assert_int_equal(good.connect_status, 0);
    assert_true(raw_handshake(cl, good, 1, 3, "s3cret", "s3cret"));
    good.write(frame(static_cast<uint8_t>(FrameType::Raft), "from raw 3"));
    good.write(frame(static_cast<uint8_t>(FrameType::ForwardReply), std::string(100000, 'x')));
    assert_true(cl.loop.run_until([&] { return cl.node(1).frames.size() >= 2; }, 5));
    assert_int_equal(cl.node(1).frames[0].peer, 3);
    assert_true(cl.node(1).frames[0].type == FrameType::Raft);
    assert_true(cl.node(1).frames[0].payload == "from raw 3");
    assert_true(cl.node(1).frames[1].payload == std::string(100000, 'x'));
    assert_true(cl.node(1).t->last_contact_us(3) > 0);
    /* a handshake frame after the handshake ends the connection */
    good.write(frame(1, hello_payload(3, random_bytes(kNonceBytes))));
    assert_true(cl.loop.run_until([&] { return good.eof; }, 5));
    good.close();

    /* a forged proof: the server's challenge checks out, our proof does not */
    RawClient bad;
    bad.connect(&cl.loop.loop, cl.node(2).port);
    assert_true(cl.loop.run_until([&] { return bad.connect_status != 1; }, 5));
    assert_true(raw_handshake(cl, bad, 2, 3, "s3cret", "guessed"));
    bad.write(frame(static_cast<uint8_t>(FrameType::Raft), "sneaky"));
    assert_true(cl.loop.run_until([&] { return bad.eof; }, 5));
    assert_true(cl.node(2).logs_matching({"refused node 3", "cluster_secret"}) == 1);
    bad.close();

    /* a server holding another secret: its challenge does not check out */
    RawClient probe;
    probe.connect(&cl.loop.loop, cl.node(2).port);
    assert_true(cl.loop.run_until([&] { return probe.connect_status != 1; }, 5));
    assert_false(raw_handshake(cl, probe, 2, 3, "not the secret", "not the secret"));
    probe.close();

    assert_true(cl.loop.run_until([&] { return good.closed && bad.closed && probe.closed; }, 5));
    for (const Frame &f : cl.node(2).frames)
        assert_true(f.payload != "sneaky");
    /* the real nodes were never disturbed */
    assert_true(cl.wait_connected({1, 2}));
    stream_and_check(cl, 1, 2, 100);
    cl.finish();
}

/* ---- loss and reconnection ---- */

static void lost_peer_reconnects_automatically(void **)
{
    Cluster cl(3);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2, 3}));
    stream_and_check(cl, 1, 2, 50);
    stream_and_check(cl, 2, 1, 50);

    for (int round = 0; round < 2; round++) {
        size_t lost_before = cl.node(1).logs_matching({"lost node 2"});
        size_t back_before = cl.node(1).logs_matching({"connected to node 2"});
        cl.stop(2);
        /* both survivors notice, and stop accepting frames for it */
        assert_true(cl.loop.run_until(
            [&] { return !cl.connected(1, 2) && !cl.connected(3, 2); }, 5));
        assert_true(cl.loop.run_until(
            [&] { return cl.node(1).logs_matching({"lost node 2"}) > lost_before; }, 5));
        assert_true(cl.node(3).logs_matching({"lost node 2"}) > 0);
        assert_false(cl.node(1).t->send(2, FrameType::Raft, "into the void"));
        /* the survivors keep talking */
        stream_and_check(cl, 1, 3, 50);
        /* stay down for a few redial rounds: loss is reported once */
        cl.loop.run_for(0.8, [&] { assert_false(cl.connected(1, 2)); });
        assert_int_equal(cl.node(1).logs_matching({"lost node 2"}), lost_before + 1);

        /* a new instance on the same port */
        cl.node(2).frames.clear();
        cl.start(2);
        assert_true(cl.wait_connected({1, 2, 3}));
        assert_true(cl.node(1).logs_matching({"connected to node 2"}) > back_before);
        stream_and_check(cl, 1, 2, 50);
        stream_and_check(cl, 2, 3, 50);
    }
    cl.finish();
}

/* A node that starts long after its peers is picked up by their redialing. */
static void late_starter_is_picked_up(void **)
{
    Cluster cl(2);
    cl.start(1);
    cl.loop.run_for(0.6, [&] { assert_false(cl.connected(1, 2)); });
    cl.start(2);
    assert_true(cl.wait_connected({1, 2}, 3));
    stream_and_check(cl, 2, 1, 20);
    cl.finish();
}

/* The worker replies to forwarded requests from inside on_frame, and may shut
 * down from there too: both must be safe, and nothing is delivered after
 * close(). */
static void hooks_may_call_back_into_the_transport(void **)
{
    Cluster cl(2);
    Node &n2 = cl.node(2);
    bool closed_in_hook = false;
    n2.on_frame = [&](uint32_t peer, FrameType type, const char *p, size_t len) {
        assert_false(closed_in_hook);
        n2.frames.push_back(Frame{peer, type, std::string(p, len)});
        if (type == FrameType::Forward)
            assert_true(n2.t->send(peer, FrameType::ForwardReply, "re:" + std::string(p, len)));
        if (type == FrameType::Raft && std::string(p, len) == "close now") {
            n2.t->close();
            closed_in_hook = true;
        }
    };
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    const int count = 500;
    for (int i = 0; i < count; i++)
        assert_true(cl.node(1).t->send(2, FrameType::Forward, "req " + std::to_string(i)));
    assert_true(cl.loop.run_until([&] { return cl.node(1).frames.size() >= count; }, 10));
    for (int i = 0; i < count; i++) {
        const Frame &f = cl.node(1).frames[i];
        assert_int_equal(f.peer, 2);
        assert_true(f.type == FrameType::ForwardReply);
        assert_true(f.payload == "re:req " + std::to_string(i));
    }
    /* close() from the hook, with more frames right behind in the same read */
    size_t before = n2.frames.size();
    std::string tail(64, 't');
    assert_true(cl.node(1).t->send(2, FrameType::Raft, "close now"));
    for (int i = 0; i < 100; i++)
        assert_true(cl.node(1).t->send(2, FrameType::Raft, tail));
    assert_true(cl.loop.run_until([&] { return n2.t->closed(); }, 5));
    assert_true(closed_in_hook);
    assert_int_equal(n2.frames.size(), before + 1);
    assert_true(cl.loop.run_until([&] { return !cl.connected(1, 2); }, 5));
    cl.finish();
}

/* ---- hostile input ---- */

static void garbage_is_rejected(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));

    std::mt19937 rng(7);
    auto random_blob = [&](size_t n) {
        std::string s(n, '\0');
        for (char &ch : s)
            ch = static_cast<char>(rng());
        return s;
    };
    std::string nonce = random_bytes(kNonceBytes);
    std::string too_short_hello = hello_payload(2, nonce);
    too_short_hello.pop_back();
    std::string zero_len;
    put_u32(zero_len, 0);
    zero_len += "garbage";
    std::string over_max;
    put_u32(over_max, kMaxFrameBytes + 1);
    over_max.push_back(1);

    struct Case {
        const char *what;
        std::string bytes;
        const char *log; /* a log line it must cause, or nullptr */
    };
    std::vector<Case> cases = {
        {"HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", nullptr},
        {"zero length frame", zero_len, nullptr},
        {"frame over the maximum", over_max, nullptr},
        {"raft frame before the handshake", frame(10, "raft?"), nullptr},
        {"forward frame before the handshake", frame(11, random_blob(300)), nullptr},
        {"proof before hello", frame(3, random_blob(32)), nullptr},
        {"challenge to a server", frame(2, random_blob(52)), nullptr},
        {"unknown type", frame(200, "x"), nullptr},
        {"hello with bad magic", frame(1, hello_payload(2, nonce, "ATMXNODX")), nullptr},
        /* atomix 0.4 and older: its commands lack the floor; said once per peer */
        {"hello of an older build", frame(1, hello_payload(2, nonce, "ATMXNODE", 1)),
         "speaks atomix wire version 1, this node 2"},
        {"hello with an unknown version", frame(1, hello_payload(2, nonce, "ATMXNODE", 9)), nullptr},
        {"hello too short", frame(1, too_short_hello), nullptr},
        {"hello too long", frame(1, hello_payload(2, nonce) + "x"), nullptr},
        {"empty hello", frame(1, ""), nullptr},
        {"hello claiming the server's own id", frame(1, hello_payload(1, nonce)), "claiming node id 1"},
        {"hello claiming an unknown id", frame(1, hello_payload(77, nonce)), "claiming node id 77"},
        {"hello claiming id 0", frame(1, hello_payload(0, nonce)), "claiming node id 0"},
        {"two hellos", frame(1, hello_payload(2, nonce)) + frame(1, hello_payload(2, nonce)),
         nullptr},
        {"hello then a raft frame", frame(1, hello_payload(2, nonce)) + frame(10, "early"), nullptr},
        {"hello then a wrong-size proof", frame(1, hello_payload(2, nonce)) + frame(3, "short"),
         "cluster_secret"},
        /* refusals of one claimed peer are logged once, until it authenticates */
        {"hello then a random proof", frame(1, hello_payload(2, nonce)) + frame(3, random_blob(32)),
         nullptr},
    };
    for (int i = 0; i < 8; i++) {
        /* a small in-range length and a random non-HELLO type, then noise */
        std::string b = random_blob(2000);
        b[0] = static_cast<char>(20 + i);
        b[1] = b[2] = b[3] = 0;
        if (b[4] == 1)
            b[4] = 99;
        cases.push_back({"random bytes", b, nullptr});
    }

    for (const Case &k : cases) {
        size_t logs_before = cl.node(1).logs.size();
        RawClient c;
        c.connect(&cl.loop.loop, cl.node(1).port);
        assert_true(cl.loop.run_until([&] { return c.connect_status != 1; }, 5));
        assert_int_equal(c.connect_status, 0);
        c.write(k.bytes);
        bool dropped = cl.loop.run_until([&] { return c.eof; }, 5);
        if (!dropped)
            fail_msg("the transport kept a connection open after: %s", k.what);
        /* the server answers nothing but a CHALLENGE to a good HELLO */
        uint8_t type;
        std::string payload;
        while (c.next_frame(type, payload))
            assert_int_equal(type, static_cast<uint8_t>(FrameType::Challenge));
        if (k.log) {
            bool logged = false;
            for (size_t i = logs_before; i < cl.node(1).logs.size(); i++)
                logged = logged || contains(cl.node(1).logs[i], k.log);
            if (!logged)
                fail_msg("no log line with \"%s\" after: %s", k.log, k.what);
        }
        c.close();
        assert_true(cl.loop.run_until([&] { return c.closed; }, 5));
    }

    /* clients that hang up early, mid-frame or mid-handshake */
    const std::string partials[] = {"", "\x05", frame(1, hello_payload(2, nonce)).substr(0, 10),
                                    frame(1, hello_payload(2, nonce))};
    for (const std::string &p : partials) {
        RawClient c;
        c.connect(&cl.loop.loop, cl.node(1).port);
        assert_true(cl.loop.run_until([&] { return c.connect_status != 1; }, 5));
        if (!p.empty())
            c.write(p);
        cl.loop.run_for(0.02, [] {});
        c.close();
        assert_true(cl.loop.run_until([&] { return c.closed; }, 5));
    }
    /* many at once */
    std::vector<std::unique_ptr<RawClient>> crowd;
    for (int i = 0; i < 40; i++) {
        crowd.push_back(std::make_unique<RawClient>());
        crowd.back()->connect(&cl.loop.loop, cl.node(1).port);
    }
    assert_true(cl.loop.run_until(
        [&] {
            for (auto &c : crowd)
                if (c->connect_status == 1)
                    return false;
            return true;
        },
        5));
    for (size_t i = 0; i < crowd.size(); i++)
        crowd[i]->write(cases[i % cases.size()].bytes);
    assert_true(cl.loop.run_until(
        [&] {
            for (auto &c : crowd)
                if (!c->eof)
                    return false;
            return true;
        },
        5));
    for (auto &c : crowd)
        c->close();
    assert_true(cl.loop.run_until(
        [&] {
            for (auto &c : crowd)
                if (!c->closed)
                    return false;
            return true;
        },
        5));

    /* nothing got through, and the real peers never noticed */
    for (const Frame &f : cl.node(1).frames)
        fail_msg("delivered a frame from %u after garbage", f.peer);
    assert_true(cl.all_connected({1, 2}));
    stream_and_check(cl, 2, 1, 100);
    stream_and_check(cl, 1, 2, 100);
    cl.finish();
}

/* Before a peer has proven it holds the secret, the transport should not
 * wait for (and buffer) more than a handshake frame's worth of its bytes: a
 * frame header announcing anything bigger than a HELLO must end the
 * connection at once.  Today the limit before the handshake is the same
 * kMaxFrameBytes (512 MiB) as after it, so an unauthenticated client can make
 * a node hold up to 512 MiB per connection, and a stray TLS ClientHello (a
 * 0x16 0x03 0x01 record header reads as a ~33 MB frame) is kept open instead
 * of being refused.
 *
 * KNOWN BUG, see the report: skipped unless ATOMIX_UNIT_KNOWN_BUGS=1 so the
 * suite stays green; run it with that set to see it fail. */
static void unauthenticated_large_frames_are_refused(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));

    std::string big_hello;
    put_u32(big_hello, 64u << 20); /* a 64 MiB "HELLO" */
    big_hello.push_back(1);
    big_hello += std::string(1 << 20, 'A');
    /* the start of a TLS 1.2 ClientHello record */
    std::string tls("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    tls += std::string(500, '\x5a');

    std::vector<std::string> kept;
    for (const std::string *bytes : {&big_hello, &tls}) {
        RawClient c;
        c.connect(&cl.loop.loop, cl.node(1).port);
        assert_true(cl.loop.run_until([&] { return c.connect_status != 1; }, 5));
        c.write(*bytes);
        if (!cl.loop.run_until([&] { return c.eof; }, 2))
            kept.push_back(bytes == &tls ? "a TLS ClientHello" : "a 64 MiB HELLO header");
        c.close();
        assert_true(cl.loop.run_until([&] { return c.closed; }, 5));
    }
    assert_true(cl.all_connected({1, 2}));
    cl.finish();
    for (const std::string &k : kept)
        fprintf(stderr, "kept an unauthenticated connection open for 2 s after %s\n", k.c_str());
    assert_true(kept.empty());
}

/* ---- lifecycle ---- */

static void lifecycle_edges(void **)
{
    /* close() without start(), twice */
    {
        Cluster cl(2);
        ClusterConfig config =
            ClusterConfig::parse(cl.initial_cluster, 1, cl.node(1).address(), 3);
        TransportHooks hooks;
        hooks.hmac = hmac_sha256;
        hooks.random_bytes = random_bytes;
        hooks.on_frame = [](uint32_t, FrameType, const char *, size_t) {};
        hooks.log = [](int, const std::string &) {};
        NodeTransport t(&cl.loop.loop, config, "s3cret", hooks);
        assert_false(t.closed());
        assert_false(t.connected(2));
        assert_false(t.send(2, FrameType::Raft, "x"));
        t.close();
        t.close();
        assert_true(cl.loop.run_until([&] { return t.closed(); }, 5));
        cl.loop.finish();
    }
    /* start() on a port somebody else holds throws, and close() still works */
    {
        Cluster cl(2);
        cl.start(1);
        ClusterConfig config =
            ClusterConfig::parse(cl.initial_cluster, 1, cl.node(1).address(), 3);
        TransportHooks hooks;
        hooks.hmac = hmac_sha256;
        hooks.random_bytes = random_bytes;
        hooks.on_frame = [](uint32_t, FrameType, const char *, size_t) {};
        hooks.log = [](int, const std::string &) {};
        auto dup = std::make_unique<NodeTransport>(&cl.loop.loop, config, "s3cret", hooks);
        bool threw = false;
        try {
            dup->start();
        } catch (const std::runtime_error &e) {
            threw = true;
            assert_true(contains(e.what(), cl.node(1).address()));
        }
        assert_true(threw);
        dup->close();
        assert_true(cl.loop.run_until([&] { return dup->closed(); }, 5));
        dup.reset();
        /* the real node 1 is unaffected */
        cl.start(2);
        assert_true(cl.wait_connected({1, 2}));
        cl.finish();
    }
    /* close() with writes in flight and connections mid-handshake */
    {
        Cluster cl(3);
        cl.start_all();
        assert_true(cl.wait_connected({1, 2, 3}));
        std::string big(4u << 20, 'z');
        for (int i = 0; i < 4; i++)
            assert_true(cl.node(1).t->send(2, FrameType::Raft, big));
        for (int i = 0; i < 1000; i++)
            assert_true(cl.node(2).t->send(3, FrameType::Forward, "pending"));
        uv_run(&cl.loop.loop, UV_RUN_NOWAIT);
        RawClient c; /* a handshake left half done */
        c.connect(&cl.loop.loop, cl.node(3).port);
        assert_true(cl.loop.run_until([&] { return c.connect_status != 1; }, 5));
        c.write(frame(1, hello_payload(1, random_bytes(kNonceBytes))));
        uv_run(&cl.loop.loop, UV_RUN_NOWAIT);
        c.close();
        cl.finish();
    }
    /* close() right after start(), before any connect completed */
    {
        Cluster cl(3);
        cl.start_all();
        cl.finish();
    }
}

/* ---- liveness and the test-only holds ---- */

static size_t frames_from(Node &n, uint32_t peer)
{
    size_t k = 0;
    for (const Frame &f : n.frames)
        k += f.peer == peer;
    return k;
}

/* An idle link stays up on pings alone: nothing is mistaken for dead. */
static void idle_links_stay_up_on_pings(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    uint64_t g12 = cl.node(1).t->link_generation(2), g21 = cl.node(2).t->link_generation(1);
    assert_true(g12 > 0 && g21 > 0);
    cl.loop.run_for(3.0, [&] { assert_true(cl.connected(1, 2)); });
    assert_int_equal(cl.node(1).t->link_generation(2), g12);
    assert_int_equal(cl.node(2).t->link_generation(1), g21);
    assert_int_equal(cl.node(1).t->dead_links() + cl.node(2).t->dead_links(), 0);
    assert_true(cl.node(1).frames.empty() && cl.node(2).frames.empty()); /* pings are not frames */
    cl.finish();
}

/* A short hold delays frames; released, they arrive complete and in order
 * on the same connection. */
static void held_frames_are_released_in_order(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    uint64_t g = cl.node(1).t->link_generation(2);
    TransportFaults hold;
    hold.hold_outbound = {2};
    cl.node(1).t->set_faults(hold);
    for (uint32_t seq = 0; seq < 30; seq++)
        assert_true(cl.node(1).t->send(2, type_for(seq), payload_for(1, 2, seq)));
    cl.loop.run_for(0.5, [&] { assert_int_equal(frames_from(cl.node(2), 1), 0); });
    cl.node(1).t->set_faults(TransportFaults());
    assert_true(cl.loop.run_until([&] { return frames_from(cl.node(2), 1) >= 30; }, 5));
    uint32_t seq = 0;
    for (const Frame &f : cl.node(2).frames)
        if (f.peer == 1) {
            assert_true(f.type == type_for(seq) && f.payload == payload_for(1, 2, seq));
            seq++;
        }
    assert_int_equal(cl.node(1).t->link_generation(2), g);
    cl.finish();
}

/* A link that silently drops (held past the user timeout) is closed by both
 * sides and redialed once it works again: a new link generation, and what
 * was held is gone with the old connection, as with TCP. */
static void silent_link_is_closed_and_redialed(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    uint64_t g = cl.node(1).t->link_generation(2);
    TransportFaults hold;
    hold.hold_outbound = {2};
    cl.node(1).t->set_faults(hold);
    assert_true(cl.node(1).t->send(2, FrameType::Forward, "lost with the link"));
    /* the receiver hears nothing for kSilentAfterMs, the sender gets no
     * acknowledgement for kTcpUserTimeoutMs: both close */
    assert_true(cl.loop.run_until([&] { return cl.node(2).t->dead_links() > 0; }, 4));
    assert_true(cl.loop.run_until([&] { return !cl.node(1).t->connected(2); }, 4));
    /* while held, redialing cannot complete the handshake */
    cl.loop.run_for(0.6, [&] { assert_false(cl.node(1).t->connected(2)); });
    cl.node(1).t->set_faults(TransportFaults());
    assert_true(cl.wait_connected({1, 2}));
    assert_true(cl.node(1).t->link_generation(2) > g);
    stream_and_check(cl, 1, 2, 20);
    assert_int_equal(frames_from(cl.node(2), 1), 20); /* the held frame never arrived */
    cl.finish();
}

/* Batching (the worker's mode): frames wait until flush(), then go out in
 * one write per peer, in order; a batch whose connection is lost is dropped
 * with it (as a socket buffer is), and the link works again afterwards. */
static void batched_frames_wait_for_flush(void **)
{
    Cluster cl(3);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2, 3}));
    NodeTransport &t = *cl.node(1).t;
    t.set_batching(true);
    uint64_t writes = t.writes(), frames = t.frames_sent();
    for (uint32_t seq = 0; seq < 200; seq++) {
        assert_true(t.send(2, type_for(seq), payload_for(1, 2, seq)));
        assert_true(t.send(3, type_for(seq), payload_for(1, 3, seq)));
    }
    cl.loop.run_for(0.2, [&] {
        assert_int_equal(frames_from(cl.node(2), 1), 0);
        assert_int_equal(frames_from(cl.node(3), 1), 0);
    });
    assert_int_equal(t.frames_sent() - frames, 400);
    t.flush();
    assert_int_equal(t.writes() - writes, 2); /* one per peer */
    assert_true(cl.loop.run_until(
        [&] { return frames_from(cl.node(2), 1) == 200 && frames_from(cl.node(3), 1) == 200; }, 5));
    for (uint32_t peer = 2; peer <= 3; peer++) {
        uint32_t seq = 0;
        for (const Frame &f : cl.node(peer).frames)
            if (f.peer == 1) {
                assert_true(f.type == type_for(seq) && f.payload == payload_for(1, peer, seq));
                seq++;
            }
    }
    /* a flush with nothing batched writes nothing */
    writes = t.writes();
    t.flush();
    assert_int_equal(t.writes(), writes);

    /* node 2 goes away with frames batched for it: they are dropped with
     * the connection, the others still go out */
    assert_true(t.send(2, FrameType::Raft, "lost with the link"));
    assert_true(t.send(3, FrameType::Raft, "still delivered"));
    cl.stop(2);
    assert_true(cl.loop.run_until([&] { return !cl.connected(1, 2); }, 5));
    writes = t.writes();
    t.flush();
    assert_int_equal(t.writes() - writes, 1);
    assert_true(cl.loop.run_until([&] { return frames_from(cl.node(3), 1) == 201; }, 5));
    cl.node(2).frames.clear();
    cl.start(2);
    assert_true(cl.wait_connected({1, 2, 3}));
    assert_true(t.send(2, FrameType::Raft, "after the redial"));
    /* leaving batching flushes what waits */
    t.set_batching(false);
    assert_true(cl.loop.run_until([&] { return frames_from(cl.node(2), 1) == 1; }, 5));
    assert_true(cl.node(2).frames.back().payload == "after the redial");
    cl.finish();
}

/* The worker publishes its read leases' commit indexes in before_write
 * (bgworker/read_leases.cpp), so no byte may reach a socket without it: a
 * flushed batch, a batch flushed early for its size, an unbatched frame,
 * held frames released. */
static void every_write_is_announced_first(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    Node &n = cl.node(1);
    NodeTransport &t = *n.t;
    t.set_batching(true);
    uint64_t calls = n.before_writes;
    assert_true(t.send(2, FrameType::Raft, "batched"));
    assert_int_equal(n.before_writes, calls); /* nothing written yet */
    t.flush();
    assert_true(n.before_writes > calls);
    assert_int_equal(n.writes_announced, t.writes());
    /* a batch past its size limit goes out inside send() */
    calls = n.before_writes;
    uint64_t writes = t.writes();
    assert_true(t.send(2, FrameType::Raft, std::string(300 * 1024, 'x')));
    assert_int_equal(t.writes(), writes + 1);
    assert_true(n.before_writes > calls);
    assert_int_equal(n.writes_announced, t.writes());
    /* unbatched */
    t.set_batching(false);
    calls = n.before_writes;
    assert_true(t.send(2, FrameType::Raft, "unbatched"));
    assert_true(n.before_writes > calls);
    assert_int_equal(n.writes_announced, t.writes());
    /* held, then released */
    TransportFaults hold;
    hold.hold_outbound = {2};
    t.set_faults(hold);
    for (int i = 0; i < 3; i++)
        assert_true(t.send(2, FrameType::Raft, "held"));
    calls = n.before_writes;
    cl.loop.run_for(0.2, [&] {});
    assert_int_equal(n.before_writes, calls);
    t.set_faults(TransportFaults());
    assert_true(n.before_writes > calls);
    assert_true(cl.loop.run_until([&] { return frames_from(cl.node(2), 1) >= 5; }, 5));
    cl.finish();
}

/* Holding what a peer sends, then releasing with a reset: the connection
 * is dropped with what was held, the peer redials, traffic resumes. */
static void inbound_hold_released_by_reset(void **)
{
    Cluster cl(2);
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    uint64_t g = cl.node(1).t->link_generation(2);
    TransportFaults hold;
    hold.hold_inbound = {1};
    hold.reset_on_release = true;
    cl.node(2).t->set_faults(hold);
    assert_true(cl.node(1).t->send(2, FrameType::Raft, "held then dropped"));
    cl.loop.run_for(0.4, [&] { assert_int_equal(frames_from(cl.node(2), 1), 0); });
    TransportFaults release;
    release.reset_on_release = true;
    cl.node(2).t->set_faults(release);
    assert_true(cl.loop.run_until([&] { return cl.node(1).t->link_generation(2) > g; }, 5));
    assert_true(cl.wait_connected({1, 2}));
    stream_and_check(cl, 1, 2, 20);
    assert_int_equal(frames_from(cl.node(2), 1), 20);
    cl.finish();
}


/* ---- digest links ---- */

static size_t frames_of(const Node &n, uint32_t peer, FrameType type)
{
    size_t count = 0;
    for (const Frame &f : n.frames)
        count += f.peer == peer && f.type == type;
    return count;
}

static bool digest_links_up(Cluster &cl, const std::vector<uint32_t> &ids)
{
    for (uint32_t a : ids)
        for (uint32_t b : ids)
            if (a != b && !cl.node(a).t->digest_link_up(b))
                return false;
    return true;
}

/* A digest goes on the digest link, which its receiver does not poll: it
 * arrives only when read_digest_links() reads it, carrying the time its
 * bytes came, not the time it was read.  Other frames arrive at once. */
static void digests_wait_on_their_link_until_read(void **)
{
    Cluster cl(2);
    cl.node(1).digest_links = cl.node(2).digest_links = true;
    cl.node(2).external_liveness = true; /* nothing reads node 2's digest link but the test */
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    assert_true(cl.loop.run_until([&] { return digest_links_up(cl, {1, 2}); }, 5));
    /* up on the dialer's side; let the acceptor read the PROOF too (bytes
     * that come with it are read with it, as they came) */
    cl.loop.run_for(0.05, [] {});
    uv_update_time(&cl.loop.loop);
    uint64_t sent_ms = uv_now(&cl.loop.loop);
    assert_true(cl.node(1).t->send(2, FrameType::Digest, "digest one"));
    assert_true(cl.node(1).t->send(2, FrameType::Raft, "raft one"));
    cl.loop.run_for(0.2, [&] { assert_int_equal(frames_of(cl.node(2), 1, FrameType::Digest), 0); });
    assert_int_equal(frames_of(cl.node(2), 1, FrameType::Raft), 1);
    uint64_t reads = cl.node(2).t->digest_reads();
    uv_update_time(&cl.loop.loop);
    uint64_t read_ms = uv_now(&cl.loop.loop);
    cl.node(2).t->read_digest_links();
    assert_true(cl.node(2).t->digest_reads() > reads);
    assert_int_equal(frames_of(cl.node(2), 1, FrameType::Digest), 1);
    const Frame &last = cl.node(2).frames.back();
    assert_true(last.type == FrameType::Digest && last.payload == "digest one");
    uint64_t heard = cl.node(2).heard_ms.back();
    /* heard when it came (within a few ms of sending), not 200 ms later */
    assert_true(heard + 2 >= sent_ms);
    assert_true(heard <= sent_ms + 50);
    assert_true(heard + 150 <= read_ms);
    /* a frame read as it came is heard at the loop's now */
    assert_true(cl.node(2).heard_ms[cl.node(2).heard_ms.size() - 2] >= sent_ms);
    cl.finish();
}

/* While digests flow on the digest link, the idle main link gets no PING
 * (one wake-up of the peer fewer per period) and its accepting side does
 * not take it for dead after kSilentAfterMs of silence on it: the peer is
 * heard on its digest link. */
static void idle_main_link_lives_on_the_digest_link(void **)
{
    Cluster cl(2);
    cl.node(1).digest_links = cl.node(2).digest_links = true;
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    assert_true(cl.loop.run_until([&] { return digest_links_up(cl, {1, 2}); }, 5));
    uint64_t g12 = cl.node(1).t->link_generation(2), g21 = cl.node(2).t->link_generation(1);
    uint64_t sent_before = cl.node(1).t->frames_sent() + cl.node(2).t->frames_sent();
    uint64_t digests = 0;
    uint64_t next = 0;
    cl.loop.run_for(3.0, [&] {
        uint64_t now = uv_hrtime() / 1000000;
        if (now < next)
            return;
        next = now + 200;
        assert_true(cl.node(1).t->send(2, FrameType::Digest, "d"));
        assert_true(cl.node(2).t->send(1, FrameType::Digest, "d"));
        digests += 2;
    });
    assert_int_equal(cl.node(1).t->link_generation(2), g12);
    assert_int_equal(cl.node(2).t->link_generation(1), g21);
    assert_int_equal(cl.node(1).t->dead_links() + cl.node(2).t->dead_links(), 0);
    /* every frame sent was a digest: no PING on either link */
    assert_int_equal(cl.node(1).t->frames_sent() + cl.node(2).t->frames_sent() - sent_before,
                     digests);
    assert_true(cl.connected(1, 2) && cl.connected(2, 1));
    /* digests stop: the main links are pinged again and stay up */
    cl.loop.run_for(2.5, [&] { assert_true(cl.connected(1, 2) && cl.connected(2, 1)); });
    assert_int_equal(cl.node(1).t->dead_links() + cl.node(2).t->dead_links(), 0);
    assert_true(cl.node(1).t->frames_sent() + cl.node(2).t->frames_sent() - sent_before > digests);
    cl.finish();
}

/* A peer without digest links (off here, as in a node that predates them)
 * refuses the second connection; digests then go on the main link, read as
 * they come. */
static void digests_fall_back_to_the_main_link(void **)
{
    Cluster cl(2);
    cl.node(1).digest_links = true;
    cl.start_all();
    assert_true(cl.wait_connected({1, 2}));
    size_t logs = cl.node(1).logs.size() + cl.node(2).logs.size();
    cl.loop.run_for(0.5, [&] { assert_false(cl.node(1).t->digest_link_up(2)); });
    assert_true(cl.node(1).t->send(2, FrameType::Digest, "on the main link"));
    assert_true(cl.loop.run_until([&] { return frames_of(cl.node(2), 1, FrameType::Digest) == 1; }, 2));
    assert_int_equal(cl.node(2).t->digest_reads(), 0);
    assert_int_equal(cl.node(1).t->dead_links() + cl.node(2).t->dead_links(), 0);
    /* a refused digest link is nothing to report */
    assert_int_equal(cl.node(1).logs.size() + cl.node(2).logs.size(), logs);
    cl.finish();
}

/* A peer that falls silent (held, as a link that drops) loses both its
 * links at the receiver; once it speaks again both come back and digests
 * take the digest link again. */
static void silent_digest_link_is_closed_and_redialed(void **)
{
    Cluster cl(2);
    cl.node(1).digest_links = cl.node(2).digest_links = true;
    cl.node(2).external_liveness = true; /* node 2's ticks: tick() below */
    cl.start_all();
    uint64_t next_tick = 0;
    auto tick = [&] {
        uint64_t now = uv_hrtime() / 1000000;
        if (now < next_tick)
            return;
        next_tick = now + 100;
        cl.node(2).t->read_digest_links();
        cl.node(2).t->check_liveness();
    };
    auto ticking = [&](const std::function<bool()> &pred) {
        return [&, pred] {
            tick();
            return pred();
        };
    };
    assert_true(cl.loop.run_until(ticking([&] { return cl.all_connected({1, 2}); }), 5));
    assert_true(cl.loop.run_until(ticking([&] { return digest_links_up(cl, {1, 2}); }), 5));
    TransportFaults hold;
    hold.hold_outbound = {2};
    cl.node(1).t->set_faults(hold);
    assert_true(cl.loop.run_until(ticking([&] { return cl.node(2).t->dead_links() >= 2; }), 5));
    assert_true(cl.loop.run_until(ticking([&] { return !cl.node(1).t->digest_link_up(2); }), 5));
    cl.node(1).t->set_faults(TransportFaults());
    assert_true(cl.loop.run_until(ticking([&] { return cl.all_connected({1, 2}); }), 5));
    assert_true(cl.loop.run_until(ticking([&] { return digest_links_up(cl, {1, 2}); }),
                                  3 + kDigestRedialMs / 1000.0));
    cl.loop.run_for(0.05, [] {});
    size_t before = frames_of(cl.node(2), 1, FrameType::Digest);
    assert_true(cl.node(1).t->send(2, FrameType::Digest, "back"));
    cl.loop.run_for(0.1, [&] {});
    assert_int_equal(frames_of(cl.node(2), 1, FrameType::Digest), before);
    cl.node(2).t->read_digest_links();
    assert_int_equal(frames_of(cl.node(2), 1, FrameType::Digest), before + 1);
    cl.finish();
}

/* A digest link carries DIGEST and PING only: anything else on it closes
 * it, undelivered.  A HELLO with an unknown role is refused. */
static void digest_link_carries_only_digests(void **)
{
    Cluster cl(3);
    cl.node(2).digest_links = true;
    cl.start(2); /* node 3 is played by raw clients; node 1 stays down */
    RawClient link;
    link.connect(&cl.loop.loop, cl.node(2).port);
    assert_true(cl.loop.run_until([&] { return link.connect_status != 1; }, 5));
    assert_true(raw_handshake(cl, link, 2, 3, "s3cret", "s3cret", kRoleDigest));
    link.write(frame(static_cast<uint8_t>(FrameType::Digest), "fine"));
    link.write(frame(static_cast<uint8_t>(FrameType::Raft), "not here"));
    cl.loop.run_for(0.1, [&] {});
    cl.node(2).t->read_digest_links();
    assert_true(cl.loop.run_until([&] { return link.eof; }, 2));
    assert_int_equal(frames_of(cl.node(2), 3, FrameType::Digest), 1);
    assert_int_equal(frames_of(cl.node(2), 3, FrameType::Raft), 0);
    link.close();
    RawClient odd;
    odd.connect(&cl.loop.loop, cl.node(2).port);
    assert_true(cl.loop.run_until([&] { return odd.connect_status != 1; }, 5));
    std::string hello = hello_payload(3, random_bytes(kNonceBytes));
    hello.push_back(7);
    odd.write(frame(1, hello));
    assert_true(cl.loop.run_until([&] { return odd.eof; }, 2));
    odd.close();
    cl.finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hmac_matches_reference_vectors),
        cmocka_unit_test(peers_connect_and_frames_arrive),
        cmocka_unit_test(many_small_frames_in_order),
        cmocka_unit_test(large_frames_arrive_intact),
        cmocka_unit_test(wrong_secret_is_refused_both_ways),
        cmocka_unit_test(handshake_follows_documented_protocol),
        cmocka_unit_test(lost_peer_reconnects_automatically),
        cmocka_unit_test(late_starter_is_picked_up),
        cmocka_unit_test(hooks_may_call_back_into_the_transport),
        cmocka_unit_test(garbage_is_rejected),
        cmocka_unit_test(unauthenticated_large_frames_are_refused),
        cmocka_unit_test(lifecycle_edges),
        cmocka_unit_test(idle_links_stay_up_on_pings),
        cmocka_unit_test(held_frames_are_released_in_order),
        cmocka_unit_test(silent_link_is_closed_and_redialed),
        cmocka_unit_test(inbound_hold_released_by_reset),
        cmocka_unit_test(batched_frames_wait_for_flush),
        cmocka_unit_test(every_write_is_announced_first),
        cmocka_unit_test(digests_wait_on_their_link_until_read),
        cmocka_unit_test(idle_main_link_lives_on_the_digest_link),
        cmocka_unit_test(digests_fall_back_to_the_main_link),
        cmocka_unit_test(silent_digest_link_is_closed_and_redialed),
        cmocka_unit_test(digest_link_carries_only_digests),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
