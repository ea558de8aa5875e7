/*
 * test_raft_message_codec.cpp — c-raft RPC messages on our node transport.
 *
 * The codec must round-trip every field of every message type, reject any
 * truncated or damaged input without reading outside it or leaking, and
 * allocate decoded messages exactly the way c-raft's own receive path does,
 * because c-raft frees them.  The build runs this under ASan/UBSan with
 * LeakSanitizer, and decoding always reads from exact-size heap copies so a
 * one-byte over-read is caught.  The last test puts the codec between c-raft's
 * simulated network and c-raft's real recv callback in a running cluster.
 */
#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "raft_message_codec.h"

extern "C" {
#include <raft/fixture.h>
}

using namespace atomix;

namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr size_t kHeader = 10; /* format, type, length */
constexpr size_t kCrc = 4;

/* ---- buffers and framing helpers ---- */

/* An exact-size heap copy of the first len bytes: std::string would hide
 * over-reads behind its terminating NUL and spare capacity. */
std::unique_ptr<uint8_t[]> exact_copy(const std::string &s, size_t len)
{
    std::unique_ptr<uint8_t[]> p(new uint8_t[len]);
    if (len > 0)
        memcpy(p.get(), s.data(), len);
    return p;
}

void poke_le(std::string &s, size_t at, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++)
        s[at + i] = static_cast<char>(v >> (8 * i));
}

uint64_t peek_le(const std::string &s, size_t at, size_t width)
{
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v |= static_cast<uint64_t>(static_cast<uint8_t>(s[at + i])) << (8 * i);
    return v;
}

/* Makes a hand-edited message well framed again (length field and checksum)
 * so that decoding reaches the structural checks behind them. */
void reseal(std::string &w)
{
    poke_le(w, 2, w.size(), 8);
    poke_le(w, w.size() - kCrc, raft_message_crc32c(w.data(), w.size() - kCrc), kCrc);
}

std::string body_of(const std::string &w) { return w.substr(kHeader, w.size() - kHeader - kCrc); }

std::string with_body(const std::string &w, const std::string &body)
{
    std::string out = w.substr(0, kHeader) + body + std::string(kCrc, '\0');
    reseal(out);
    return out;
}

std::string encode(const raft_message &m)
{
    std::string w;
    encode_raft_message(m, w);
    return w;
}

const char kPeer[] = "peer:9";

/* Decodes a whole encoded message from an exact-size copy; checks that the
 * caller's server_id / server_address survive. */
raft_message decode(const std::string &w)
{
    auto buf = exact_copy(w, w.size());
    raft_message m;
    memset(&m, 0, sizeof m);
    m.server_id = 77;
    m.server_address = kPeer;
    decode_raft_message(buf.get(), w.size(), m);
    assert_true(m.server_id == 77);
    assert_ptr_equal(m.server_address, kPeer);
    return m;
}

/* True if decoding the first len bytes throws RaftMessageDecodeError (and
 * then leaves the message untouched); false if it decodes, in which case the
 * message is released again. */
bool rejects(const std::string &w, size_t len)
{
    auto buf = exact_copy(w, len);
    raft_message m, before;
    memset(&m, 0xA5, sizeof m);
    memcpy(&before, &m, sizeof m);
    try {
        decode_raft_message(buf.get(), len, m);
    } catch (const RaftMessageDecodeError &) {
        assert_memory_equal(&m, &before, sizeof m);
        return true;
    }
    free_decoded_raft_message(m);
    return false;
}

bool rejects(const std::string &w) { return rejects(w, w.size()); }

/* ---- message builders ---- */

std::string pattern(size_t len, unsigned seed)
{
    std::string s(len, '\0');
    for (size_t i = 0; i < len; i++)
        s[i] = static_cast<char>((i * 131 + seed * 17 + (i >> 8)) & 0xFF);
    return s;
}

/* An AppendEntries whose entries point into strings this object owns, as a
 * leader's do into its log. */
struct Append {
    std::vector<std::string> data;
    std::vector<raft_entry> entries;
    raft_message msg{};

    Append(raft_term term, raft_index prev_index, raft_term prev_term, raft_index commit,
           const std::vector<size_t> &lens)
    {
        static const unsigned short types[] = {RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE};
        for (size_t i = 0; i < lens.size(); i++)
            data.push_back(pattern(lens[i], static_cast<unsigned>(i)));
        entries.resize(lens.size());
        for (size_t i = 0; i < lens.size(); i++) {
            raft_entry &e = entries[i];
            e.term = i % 2 ? kMax : i;
            e.type = types[i % 3];
            e.buf.len = lens[i];
            e.buf.base = lens[i] ? &data[i][0] : nullptr; /* the encoder must cope */
            e.batch = nullptr;
        }
        msg.type = RAFT_IO_APPEND_ENTRIES;
        msg.append_entries.term = term;
        msg.append_entries.prev_log_index = prev_index;
        msg.append_entries.prev_log_term = prev_term;
        msg.append_entries.leader_commit = commit;
        msg.append_entries.entries = entries.empty() ? nullptr : entries.data();
        msg.append_entries.n_entries = static_cast<unsigned>(entries.size());
    }
    Append(const Append &) = delete;
};

/* An InstallSnapshot owning its configuration and data. */
struct Snapshot {
    std::string data;
    raft_message msg{};

    Snapshot(const std::vector<std::pair<std::string, int>> &servers, size_t data_len)
        : data(pattern(data_len, 3))
    {
        msg.type = RAFT_IO_INSTALL_SNAPSHOT;
        raft_install_snapshot &s = msg.install_snapshot;
        s.term = kMax;
        s.last_index = kMax - 1;
        s.last_term = 1;
        s.conf_index = 0;
        raft_configuration_init(&s.conf);
        raft_id id = 1;
        for (const auto &srv : servers) {
            assert_int_equal(raft_configuration_add(&s.conf, id, srv.first.c_str(), srv.second), 0);
            id = id == 1 ? kMax : id - 1000; /* 1, max, max-1000, ... */
        }
        s.data.len = data_len;
        s.data.base = data_len ? &data[0] : nullptr;
    }
    ~Snapshot() { raft_configuration_close(&msg.install_snapshot.conf); }
    Snapshot(const Snapshot &) = delete;
};

raft_message simple(unsigned short type)
{
    raft_message m{};
    m.type = type;
    return m;
}

/* ---- checks ---- */

/* Decoded entries must have c-raft's receive-path shape: one batch shared by
 * all, each entry's data at the next 8-byte aligned offset, empty entries
 * with a NULL base. */
void assert_same_append(const raft_append_entries &want, const raft_append_entries &got)
{
    assert_true(got.term == want.term);
    assert_true(got.prev_log_index == want.prev_log_index);
    assert_true(got.prev_log_term == want.prev_log_term);
    assert_true(got.leader_commit == want.leader_commit);
    assert_int_equal(got.n_entries, want.n_entries);
    if (want.n_entries == 0) {
        assert_null(got.entries);
        return;
    }
    assert_non_null(got.entries);
    const auto *batch = static_cast<const uint8_t *>(got.entries[0].batch);
    assert_non_null(batch);
    size_t offset = 0;
    for (unsigned i = 0; i < want.n_entries; i++) {
        const raft_entry &w = want.entries[i], &g = got.entries[i];
        assert_true(g.term == w.term);
        assert_int_equal(g.type, w.type);
        assert_int_equal(g.buf.len, w.buf.len);
        assert_ptr_equal(g.batch, batch);
        if (w.buf.len == 0) {
            assert_null(g.buf.base);
            continue;
        }
        assert_ptr_equal(g.buf.base, batch + offset);
        assert_int_equal(reinterpret_cast<uintptr_t>(g.buf.base) % 8, 0);
        assert_memory_equal(g.buf.base, w.buf.base, w.buf.len);
        offset += (w.buf.len + 7) / 8 * 8;
    }
}

/* Frees a decoded AppendEntries exactly as recv_append_entries.c does when it
 * replies: the first entry's batch, then the array. */
void craft_free_append(raft_append_entries &a)
{
    if (a.n_entries > 0 && a.entries[0].batch != nullptr)
        raft_free(a.entries[0].batch);
    if (a.entries != nullptr)
        raft_free(a.entries);
}

void assert_same_snapshot(const raft_install_snapshot &want, const raft_install_snapshot &got)
{
    assert_true(got.term == want.term);
    assert_true(got.last_index == want.last_index);
    assert_true(got.last_term == want.last_term);
    assert_true(got.conf_index == want.conf_index);
    assert_int_equal(got.conf.n, want.conf.n);
    for (unsigned i = 0; i < want.conf.n; i++) {
        assert_true(got.conf.servers[i].id == want.conf.servers[i].id);
        assert_int_equal(got.conf.servers[i].role, want.conf.servers[i].role);
        assert_string_equal(got.conf.servers[i].address, want.conf.servers[i].address);
    }
    assert_int_equal(got.data.len, want.data.len);
    if (want.data.len == 0)
        assert_null(got.data.base);
    else
        assert_memory_equal(got.data.base, want.data.base, want.data.len);
}

/* ---- tests ---- */

/* Bit at a time, straight from the definition. */
uint32_t reference_crc32c(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

void test_crc32c(void **)
{
    assert_int_equal(raft_message_crc32c("123456789", 9), 0xE3069283u); /* the standard check value */
    assert_int_equal(raft_message_crc32c("", 0), 0);
    /* Every length and alignment around the 8-byte steps. */
    std::string s = pattern(200, 5);
    auto buf = exact_copy(s, s.size());
    for (size_t from = 0; from < 9; from++)
        for (size_t len = 0; from + len <= s.size(); len++)
            assert_int_equal(raft_message_crc32c(buf.get() + from, len),
                             reference_crc32c(buf.get() + from, len));
}

/* Format byte, type, self-delimiting length; encode appends. */
void test_framing(void **)
{
    raft_message t = simple(RAFT_IO_TIMEOUT_NOW);
    t.timeout_now = {1, 2, 3};
    Append a(5, 6, 7, 8, {1, 7, 9});

    std::string w = "prefix";
    encode_raft_message(t, w);
    size_t second = w.size();
    encode_raft_message(a.msg, w);
    assert_true(w.substr(0, 6) == "prefix");

    /* A reader finds each message's end from its first 10 bytes alone. */
    size_t at = 6;
    assert_int_equal(static_cast<uint8_t>(w[at]), kRaftMessageFormat);
    assert_int_equal(static_cast<uint8_t>(w[at + 1]), RAFT_IO_TIMEOUT_NOW);
    size_t len1 = peek_le(w, at + 2, 8);
    assert_int_equal(len1, kHeader + 3 * 8 + kCrc);
    assert_int_equal(at + len1, second);
    size_t len2 = peek_le(w, second + 2, 8);
    assert_int_equal(second + len2, w.size());
    assert_int_equal(static_cast<uint8_t>(w[second + 1]), RAFT_IO_APPEND_ENTRIES);

    raft_message d1 = decode(w.substr(at, len1));
    assert_int_equal(d1.type, RAFT_IO_TIMEOUT_NOW);
    assert_true(d1.timeout_now.term == 1 && d1.timeout_now.last_log_index == 2 &&
                d1.timeout_now.last_log_term == 3);
    raft_message d2 = decode(w.substr(second, len2));
    assert_same_append(a.msg.append_entries, d2.append_entries);
    craft_free_append(d2.append_entries);
}

void test_append_entries_round_trip(void **)
{
    const std::vector<std::vector<size_t>> shapes = {
        {},                                /* heartbeat */
        {1},
        {0, 0, 0},                         /* all empty: still one batch */
        {1, 7, 9, 0, 8, 16, 3},
        {7, 1 << 20, 9, (1 << 20) + 1, 1}, /* 1 MiB and unaligned neighbours */
    };
    for (const auto &lens : shapes) {
        for (uint64_t v : {uint64_t{0}, kMax}) {
            Append a(v, v, kMax - v, v, lens);
            raft_message d = decode(encode(a.msg));
            assert_int_equal(d.type, RAFT_IO_APPEND_ENTRIES);
            assert_same_append(a.msg.append_entries, d.append_entries);
            craft_free_append(d.append_entries);
        }
    }
}

void test_small_messages_round_trip(void **)
{
    for (uint64_t v : {uint64_t{0}, uint64_t{1}, kMax}) {
        raft_message m = simple(RAFT_IO_APPEND_ENTRIES_RESULT);
        m.append_entries_result = {v, kMax - v, v};
        raft_message d = decode(encode(m));
        assert_int_equal(d.type, RAFT_IO_APPEND_ENTRIES_RESULT);
        assert_true(d.append_entries_result.term == v);
        assert_true(d.append_entries_result.rejected == kMax - v);
        assert_true(d.append_entries_result.last_log_index == v);

        for (int flags = 0; flags < 4; flags++) {
            m = simple(RAFT_IO_REQUEST_VOTE);
            m.request_vote = {v, kMax - v, v, kMax, (flags & 1) != 0, (flags & 2) != 0};
            d = decode(encode(m));
            assert_int_equal(d.type, RAFT_IO_REQUEST_VOTE);
            assert_true(d.request_vote.term == v);
            assert_true(d.request_vote.candidate_id == kMax - v);
            assert_true(d.request_vote.last_log_index == v);
            assert_true(d.request_vote.last_log_term == kMax);
            assert_int_equal(d.request_vote.disrupt_leader, (flags & 1) != 0);
            assert_int_equal(d.request_vote.pre_vote, (flags & 2) != 0);
        }

        for (bool granted : {false, true}) {
            for (raft_tribool pre : {raft_tribool_unknown, raft_tribool_true, raft_tribool_false}) {
                m = simple(RAFT_IO_REQUEST_VOTE_RESULT);
                m.request_vote_result = {v, granted, pre};
                d = decode(encode(m));
                assert_int_equal(d.type, RAFT_IO_REQUEST_VOTE_RESULT);
                assert_true(d.request_vote_result.term == v);
                assert_int_equal(d.request_vote_result.vote_granted, granted);
                assert_int_equal(d.request_vote_result.pre_vote, pre);
            }
        }

        m = simple(RAFT_IO_TIMEOUT_NOW);
        m.timeout_now = {v, kMax - v, v};
        d = decode(encode(m));
        assert_int_equal(d.type, RAFT_IO_TIMEOUT_NOW);
        assert_true(d.timeout_now.term == v);
        assert_true(d.timeout_now.last_log_index == kMax - v);
        assert_true(d.timeout_now.last_log_term == v);
    }
}

const std::vector<std::pair<std::string, int>> kOneServer = {{"127.0.0.1:5432", RAFT_VOTER}};
const std::vector<std::pair<std::string, int>> kFiveServers = {
    {"10.0.0.1:7000", RAFT_VOTER}, {"", RAFT_STANDBY}, {"host-3", RAFT_SPARE},
    {std::string(300, 'x'), RAFT_VOTER}, {"[::1]:7000", RAFT_STANDBY}};

void test_install_snapshot_round_trip(void **)
{
    const std::vector<std::pair<const std::vector<std::pair<std::string, int>> *, size_t>> cases = {
        {&kOneServer, 0}, {&kOneServer, 1}, {&kFiveServers, 7}, {&kFiveServers, (3 << 20) + 5}};
    for (const auto &c : cases) {
        Snapshot s(*c.first, c.second);
        raft_message d = decode(encode(s.msg));
        assert_int_equal(d.type, RAFT_IO_INSTALL_SNAPSHOT);
        assert_same_snapshot(s.msg.install_snapshot, d.install_snapshot);
        /* What recv_install_snapshot.c does when it replies. */
        raft_configuration_close(&d.install_snapshot.conf);
        raft_free(d.install_snapshot.data.base);
    }
}

void test_free_decoded(void **)
{
    Append a(1, 2, 3, 4, {5, 0, 17});
    raft_message d = decode(encode(a.msg));
    free_decoded_raft_message(d);
    assert_null(d.append_entries.entries);
    assert_int_equal(d.append_entries.n_entries, 0);
    free_decoded_raft_message(d); /* idempotent */

    Append heartbeat(1, 2, 3, 4, {});
    d = decode(encode(heartbeat.msg));
    free_decoded_raft_message(d);

    Snapshot s(kFiveServers, 1000);
    d = decode(encode(s.msg));
    free_decoded_raft_message(d);
    assert_int_equal(d.install_snapshot.conf.n, 0);
    assert_null(d.install_snapshot.data.base);
    free_decoded_raft_message(d);

    raft_message v = simple(RAFT_IO_REQUEST_VOTE);
    d = decode(encode(v));
    free_decoded_raft_message(d); /* nothing to free */
}

bool encode_throws(const raft_message &m, std::string &w)
{
    try {
        encode_raft_message(m, w);
        return false;
    } catch (const std::invalid_argument &) {
        return true;
    }
}

/* Caller bugs are refused up front and leave the output as it was. */
void test_encode_rejects_bad_input(void **)
{
    std::string w = "keep";
    assert_true(encode_throws(simple(0), w));
    assert_true(encode_throws(simple(RAFT_IO_TIMEOUT_NOW + 1), w));
    Snapshot s(kFiveServers, 3);
    raft_server &srv = s.msg.install_snapshot.conf.servers[2];
    int role = srv.role;
    srv.role = -1;
    assert_true(encode_throws(s.msg, w));
    srv.role = role;
    char *address = srv.address;
    srv.address = nullptr;
    assert_true(encode_throws(s.msg, w));
    srv.address = address;
    assert_true(w == "keep");
}

/* One small encoded message of every type and shape. */
std::vector<std::string> small_samples()
{
    std::vector<std::string> out;
    raft_message m = simple(RAFT_IO_APPEND_ENTRIES_RESULT);
    m.append_entries_result = {1, 2, kMax};
    out.push_back(encode(m));
    m = simple(RAFT_IO_REQUEST_VOTE);
    m.request_vote = {kMax, 3, 4, 5, true, true};
    out.push_back(encode(m));
    m = simple(RAFT_IO_REQUEST_VOTE_RESULT);
    m.request_vote_result = {7, true, raft_tribool_false};
    out.push_back(encode(m));
    m = simple(RAFT_IO_TIMEOUT_NOW);
    m.timeout_now = {8, 9, 10};
    out.push_back(encode(m));
    Append heartbeat(1, 2, 3, 4, {});
    out.push_back(encode(heartbeat.msg));
    Append entries(1, 2, 3, 4, {1, 7, 0, 9, 33});
    out.push_back(encode(entries.msg));
    Snapshot one(kOneServer, 0);
    out.push_back(encode(one.msg));
    Snapshot five(kFiveServers, 100);
    out.push_back(encode(five.msg));
    return out;
}

std::vector<std::string> big_samples()
{
    Append entries(1, 2, 3, 4, {7, 1 << 20, 9});
    Snapshot snap(kFiveServers, (2 << 20) + 3);
    return {encode(entries.msg), encode(snap.msg)};
}

/* Every length for small messages; both ends and a stride for big ones. */
std::vector<size_t> cut_points(size_t n, bool every)
{
    std::vector<size_t> cuts;
    for (size_t i = 0; i < n; i += (every || i < 64 || i + 64 >= n) ? 1 : 65521)
        cuts.push_back(i);
    return cuts;
}

void test_truncation_rejected(void **)
{
    for (bool small : {true, false}) {
        for (const std::string &w : small ? small_samples() : big_samples()) {
            /* As cut by the network: caught by the length field. */
            for (size_t len : cut_points(w.size(), small))
                assert_true(rejects(w, len));
            /* With the framing repaired, so the body parser meets the cut. */
            std::string body = body_of(w);
            for (size_t cut : cut_points(body.size(), small))
                assert_true(rejects(with_body(w, body.substr(0, cut))));
            assert_true(rejects(with_body(w, body + std::string(1, '\0'))));
            assert_false(rejects(with_body(w, body))); /* the repair itself is sound */
        }
    }
}

/* Flips 1 to 4 distinct bytes in [from, to). */
std::string corrupt(std::string w, size_t from, size_t to, std::mt19937_64 &rng)
{
    std::map<size_t, uint8_t> flips;
    size_t k = 1 + rng() % 4;
    while (flips.size() < std::min(k, to - from))
        flips[from + rng() % (to - from)] = static_cast<uint8_t>(1 + rng() % 255);
    for (const auto &f : flips)
        w[f.first] = static_cast<char>(w[f.first] ^ f.second);
    return w;
}

void test_random_corruption_rejected(void **)
{
    std::mt19937_64 rng(20240601);
    for (bool small : {true, false})
        for (const std::string &w : small ? small_samples() : big_samples())
            for (int i = 0; i < (small ? 3000 : 20); i++)
                assert_true(rejects(corrupt(w, 0, w.size(), rng)));
}

/* Corruption behind a valid checksum (an encoder bug, a hostile peer): the
 * strict parser must either refuse it or decode something whose encoding is
 * exactly the input — never read outside it or leak. */
void test_forged_corruption_is_safe(void **)
{
    std::mt19937_64 rng(7);
    unsigned accepted = 0, refused = 0;
    for (const std::string &w : small_samples()) {
        for (int i = 0; i < 3000; i++) {
            std::string f = corrupt(w, 0, w.size() - kCrc, rng);
            reseal(f);
            auto buf = exact_copy(f, f.size());
            raft_message m{};
            try {
                decode_raft_message(buf.get(), f.size(), m);
            } catch (const RaftMessageDecodeError &) {
                refused++;
                continue;
            }
            accepted++;
            bool same = encode(m) == f;
            free_decoded_raft_message(m);
            assert_true(same);
        }
    }
    assert_true(accepted > 0 && refused > 0);
}

std::string edited(std::string w, size_t at, uint64_t v, size_t width)
{
    poke_le(w, at, v, width);
    reseal(w);
    return w;
}

/* Each structural check, aimed at its field (offsets from the header's
 * layout).  Every case is also checked with a harmless edit first, so a
 * rejection cannot come from a broken test helper. */
void test_targeted_rejections(void **)
{
    /* AppendEntries: n_entries @42, entry 0: term @46, type @54, len @56 */
    Append a(1, 2, 3, 4, {5, 9});
    std::string w = encode(a.msg);
    assert_false(rejects(edited(w, 46, 99, 8)));
    assert_true(rejects(edited(w, 0, kRaftMessageFormat + 1, 1)));
    assert_true(rejects(edited(w, 1, 0, 1)));
    assert_true(rejects(edited(w, 1, RAFT_IO_TIMEOUT_NOW + 1, 1)));
    assert_true(rejects(edited(w, 54, 0, 2)));
    assert_true(rejects(edited(w, 54, RAFT_CHANGE + 1, 2)));
    assert_true(rejects(edited(w, 42, 0xFFFFFFFF, 4))); /* no giant allocation */
    assert_true(rejects(edited(w, 42, 3, 4)));
    assert_true(rejects(edited(w, 42, 1, 4)));
    assert_true(rejects(edited(w, 56, kMax, 8)));
    assert_true(rejects(edited(w, 56, 6, 8)));
    assert_true(rejects(edited(w, 56, 4, 8)));
    /* The length field disagrees, checksum recomputed over it. */
    for (uint64_t len : {uint64_t{w.size() - 1}, uint64_t{w.size() + 1}, kMax}) {
        std::string l = w;
        poke_le(l, 2, len, 8);
        poke_le(l, l.size() - kCrc, raft_message_crc32c(l.data(), l.size() - kCrc), kCrc);
        assert_true(rejects(l));
    }

    /* InstallSnapshot: n_servers @42; server 0: id @46, role @54, address
     * length @55, "a:1" @59; server 1: id @62, role @70, length @71,
     * "a:2" @75; data length @78 */
    Snapshot s({{"a:1", RAFT_VOTER}, {"a:2", RAFT_STANDBY}}, 3);
    w = encode(s.msg);
    assert_false(rejects(edited(w, 10, 5, 8)));
    assert_false(rejects(edited(w, 54, RAFT_SPARE, 1)));
    assert_true(rejects(edited(w, 54, 3, 1)));
    assert_true(rejects(edited(w, 54, 255, 1)));
    assert_true(rejects(edited(w, 46, 0, 8)));
    assert_true(rejects(edited(w, 62, 1, 8)));     /* duplicate id */
    assert_true(rejects(edited(w, 77, '1', 1)));   /* duplicate address */
    assert_true(rejects(edited(w, 60, 0, 1)));     /* NUL inside the address */
    assert_true(rejects(edited(w, 55, 0xFFFFFFFF, 4)));
    assert_true(rejects(edited(w, 42, 0xFFFFFFFF, 4)));
    assert_true(rejects(edited(w, 42, 3, 4)));
    assert_true(rejects(edited(w, 42, 1, 4)));
    assert_true(rejects(edited(w, 78, 2, 8)));
    assert_true(rejects(edited(w, 78, 4, 8)));
    assert_true(rejects(edited(w, 78, kMax, 8)));

    /* RequestVote flags @42; RequestVoteResult vote_granted @18, pre_vote @19 */
    raft_message v = simple(RAFT_IO_REQUEST_VOTE);
    w = encode(v);
    assert_false(rejects(edited(w, 42, 3, 1)));
    assert_true(rejects(edited(w, 42, 4, 1)));
    assert_true(rejects(edited(w, 42, 0x80, 1)));
    v = simple(RAFT_IO_REQUEST_VOTE_RESULT);
    w = encode(v);
    assert_false(rejects(edited(w, 19, raft_tribool_false, 1)));
    assert_true(rejects(edited(w, 18, 2, 1)));
    assert_true(rejects(edited(w, 19, 3, 1)));
}

/* ---- through c-raft's own receive path ----
 *
 * A 3-server raft_fixture cluster where every message the simulated network
 * delivers is encoded, decoded and handed to c-raft's real recv callback, the
 * way the node transport will do it.  c-raft then frees our allocations on
 * its own paths (reply, append to log, snapshot install, rejection); ASan and
 * LeakSanitizer check it does so exactly.  Pre-vote, snapshots with a lagging
 * follower, a barrier, a configuration change and a leadership transfer make
 * every message type and entry type cross the codec. */

struct Hook {
    int (*start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
    raft_io_recv_cb recv;
};
std::map<struct raft_io *, Hook> g_hooks;
unsigned g_seen[RAFT_IO_TIMEOUT_NOW + 1];
unsigned g_entry_types[RAFT_CHANGE + 1];
unsigned g_pre_votes, g_disrupts;
/* Reported after the run: a cmocka failure (longjmp) must not unwind through
 * libraft's frames. */
std::vector<std::string> g_problems;

void problem(const std::string &p)
{
    if (g_problems.size() < 20)
        g_problems.push_back(p);
}

void codec_recv(struct raft_io *io, struct raft_message *m)
{
    raft_message copy{};
    copy.server_id = m->server_id;
    copy.server_address = m->server_address;
    try {
        std::string wire = encode(*m);
        auto buf = exact_copy(wire, wire.size());
        decode_raft_message(buf.get(), wire.size(), copy);
        if (encode(copy) != wire)
            problem("a decoded message encodes differently");
    } catch (const std::exception &e) {
        problem(std::string("codec threw: ") + e.what());
        free_decoded_raft_message(*m);
        return;
    }
    /* The fixture's own delivered copy has the same shape as ours (one batch;
     * a configuration plus data), so the same function releases it. */
    free_decoded_raft_message(*m);

    g_seen[copy.type]++;
    if (copy.type == RAFT_IO_REQUEST_VOTE) {
        g_pre_votes += copy.request_vote.pre_vote;
        g_disrupts += copy.request_vote.disrupt_leader;
    }
    if (copy.type == RAFT_IO_APPEND_ENTRIES)
        for (unsigned i = 0; i < copy.append_entries.n_entries; i++)
            g_entry_types[copy.append_entries.entries[i].type]++;
    g_hooks.at(io).recv(io, &copy); /* c-raft owns copy's memory from here */
}

int codec_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    Hook &h = g_hooks.at(io);
    h.recv = recv;
    return h.start(io, msecs, tick, codec_recv);
}

/* A replica's state: a hash over every applied byte. */
struct Replica {
    raft_fsm fsm{};
    uint64_t hash = 1469598103934665603ULL;
    uint64_t applied = 0;
    unsigned restores = 0;
};

constexpr size_t kSnapshotFiller = (64 << 10) + 3; /* makes snapshots sizeable and unaligned */

int replica_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    auto *r = static_cast<Replica *>(fsm->data);
    const auto *p = static_cast<const uint8_t *>(buf->base);
    for (size_t i = 0; i < buf->len; i++)
        r->hash = (r->hash ^ p[i]) * 1099511628211ULL;
    r->applied++;
    *result = nullptr;
    return 0;
}

int replica_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    auto *r = static_cast<Replica *>(fsm->data);
    std::string s(16, '\0');
    poke_le(s, 0, r->hash, 8);
    poke_le(s, 8, r->applied, 8);
    s += pattern(kSnapshotFiller, 9);
    auto *b = static_cast<raft_buffer *>(raft_malloc(sizeof(raft_buffer)));
    b->len = s.size();
    b->base = raft_malloc(s.size());
    memcpy(b->base, s.data(), s.size());
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

int replica_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    auto *r = static_cast<Replica *>(fsm->data);
    if (buf->len != 16 + kSnapshotFiller) {
        problem("restored a snapshot of the wrong size");
    } else {
        std::string s(static_cast<const char *>(buf->base), 16);
        r->hash = peek_le(s, 0, 8);
        r->applied = peek_le(s, 8, 8);
        r->restores++;
    }
    raft_free(buf->base); /* on success the buffer is ours */
    return 0;
}

void apply_done(struct raft_apply *req, int status, void *)
{
    if (status != 0)
        problem("apply failed: " + std::to_string(status));
    delete req;
}

/* Submits n commands of awkward lengths on server i; returns the last index. */
raft_index submit(raft_fixture &f, unsigned i, unsigned n, std::mt19937_64 &rng)
{
    static const size_t lens[] = {1, 3, 7, 9, 13, 17, 31, 100003};
    struct raft *r = raft_fixture_get(&f, i);
    for (unsigned k = 0; k < n; k++) {
        size_t len = lens[rng() % (sizeof lens / sizeof lens[0])];
        std::string data = pattern(len, static_cast<unsigned>(rng()));
        raft_buffer buf;
        buf.len = len;
        buf.base = raft_malloc(len);
        memcpy(buf.base, data.data(), len);
        auto *req = new struct raft_apply;
        if (raft_apply(r, req, &buf, 1, apply_done) != 0) {
            problem("raft_apply refused");
            raft_free(buf.base);
            delete req;
        }
    }
    return raft_last_index(r);
}

bool has_other_leader(raft_fixture *f, void *old)
{
    unsigned l = raft_fixture_leader_index(f);
    return l < raft_fixture_n(f) && l != *static_cast<unsigned *>(old);
}

void test_through_craft_recv(void **)
{
    /* Zeroed: raft_fixture_initialize leaves f->n as it finds it. */
    auto fixture = std::make_unique<raft_fixture>();
    raft_fixture &f = *fixture;
    Replica replicas[3];
    std::mt19937_64 rng(42);
    assert_int_equal(raft_fixture_initialize(&f), 0);
    for (Replica &rep : replicas) {
        rep.fsm.version = 1;
        rep.fsm.data = &rep;
        rep.fsm.apply = replica_apply;
        rep.fsm.snapshot = replica_snapshot;
        rep.fsm.restore = replica_restore;
        assert_int_equal(raft_fixture_grow(&f, &rep.fsm), 0);
    }
    for (unsigned i = 0; i < 3; i++) {
        struct raft *r = raft_fixture_get(&f, i);
        raft_set_pre_vote(r, true);
        raft_set_snapshot_threshold(r, 8);
        raft_set_snapshot_trailing(r, 2);
        raft_fixture_set_randomized_election_timeout(&f, i, 1000 + 300 * i);
        /* What the node transport does to each group's raft_io. */
        g_hooks[r->io] = Hook{r->io->start, nullptr};
        r->io->start = codec_start;
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&f, 3, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&f), 0);

    assert_true(raft_fixture_step_until_has_leader(&f, 20000));
    unsigned leader = raft_fixture_leader_index(&f);
    raft_index index = submit(f, leader, 10, rng);
    assert_true(raft_fixture_step_until_applied(&f, 3, index, 20000));

    /* Cut one follower off while the log moves on and gets snapshotted
     * away: when it is back, only InstallSnapshot can catch it up. */
    unsigned lagging = (leader + 1) % 3, other = (leader + 2) % 3;
    for (unsigned j : {leader, other}) {
        raft_fixture_disconnect(&f, lagging, j);
        raft_fixture_disconnect(&f, j, lagging);
    }
    index = submit(f, leader, 30, rng);
    assert_true(raft_fixture_step_until_applied(&f, leader, index, 20000));
    assert_true(raft_fixture_step_until_applied(&f, other, index, 20000));
    for (unsigned j : {leader, other}) {
        raft_fixture_reconnect(&f, lagging, j);
        raft_fixture_reconnect(&f, j, lagging);
    }
    assert_true(raft_fixture_step_until_applied(&f, 3, index, 20000));
    assert_true(replicas[lagging].restores > 0);

    /* A barrier entry and a configuration change entry. */
    struct raft *r = raft_fixture_get(&f, leader);
    static struct raft_barrier barrier;
    assert_int_equal(raft_barrier(r, &barrier, [](struct raft_barrier *, int status) {
                         if (status != 0)
                             problem("barrier failed");
                     }),
                     0);
    static struct raft_change change;
    assert_int_equal(raft_assign(r, &change, raft_fixture_get(&f, other)->id, RAFT_STANDBY,
                                 [](struct raft_change *, int status) {
                                     if (status != 0)
                                         problem("assign failed");
                                 }),
                     0);
    index = submit(f, leader, 3, rng);
    assert_true(raft_fixture_step_until_applied(&f, 3, index, 20000));

    /* Leadership transfer: TimeoutNow, then a vote that disrupts the leader. */
    static struct raft_transfer transfer;
    assert_int_equal(raft_transfer(r, &transfer, 0, [](struct raft_transfer *) {}), 0);
    assert_true(raft_fixture_step_until(&f, has_other_leader, &leader, 20000));
    index = submit(f, raft_fixture_leader_index(&f), 5, rng);
    assert_true(raft_fixture_step_until_applied(&f, 3, index, 20000));

    for (const std::string &p : g_problems)
        fprintf(stderr, "problem: %s\n", p.c_str());
    assert_int_equal(g_problems.size(), 0);
    for (int type = RAFT_IO_APPEND_ENTRIES; type <= RAFT_IO_TIMEOUT_NOW; type++)
        assert_true(g_seen[type] > 0);
    for (int type = RAFT_COMMAND; type <= RAFT_CHANGE; type++)
        assert_true(g_entry_types[type] > 0);
    assert_true(g_pre_votes > 0);
    assert_true(g_disrupts > 0);
    for (const Replica &rep : replicas) {
        assert_true(rep.hash == replicas[0].hash);
        assert_true(rep.applied == replicas[0].applied);
    }

    raft_fixture_close(&f);
    g_hooks.clear();
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_append_entries_round_trip),
        cmocka_unit_test(test_small_messages_round_trip),
        cmocka_unit_test(test_install_snapshot_round_trip),
        cmocka_unit_test(test_free_decoded),
        cmocka_unit_test(test_encode_rejects_bad_input),
        cmocka_unit_test(test_truncation_rejected),
        cmocka_unit_test(test_random_corruption_rejected),
        cmocka_unit_test(test_forged_corruption_is_safe),
        cmocka_unit_test(test_targeted_rejections),
        cmocka_unit_test(test_through_craft_recv),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
