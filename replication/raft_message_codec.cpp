/*
 * raft_message_codec.cpp — see raft_message_codec.h for the wire layout and
 * for who owns what after decoding.
 */
#include "raft_message_codec.h"

#include <array>
#include <cstring>
#include <new>
#include <stdexcept>

namespace atomix {

namespace {

constexpr size_t kHeaderSize = 1 + 1 + 8;       /* format, type, length */
constexpr size_t kCrcSize = 4;
constexpr size_t kEntryHeaderSize = 8 + 2 + 8;  /* term, type, len */

constexpr uint8_t kDisruptLeader = 1 << 0;
constexpr uint8_t kPreVote = 1 << 1;

/* ---- CRC-32C (Castagnoli, reflected), slicing by 8 ----
 * Eight bytes per step through eight tables: a whole encode or decode runs at
 * ~1 GB/s instead of ~250 MB/s with the one-table loop, which would fall
 * behind a fast network on big entries and snapshots. */

using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr CrcTables make_crc_tables()
{
    CrcTables t{};
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (size_t k = 1; k < 8; k++)
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
    return t;
}

constexpr CrcTables kCrc = make_crc_tables();

/* ---- writing ---- */

void put_le(std::string &out, uint64_t v, size_t width)
{
    char b[8];
    for (size_t i = 0; i < width; i++)
        b[i] = static_cast<char>(v >> (8 * i));
    out.append(b, width);
}

void put8(std::string &out, uint8_t v) { put_le(out, v, 1); }
void put16(std::string &out, uint16_t v) { put_le(out, v, 2); }
void put32(std::string &out, uint32_t v) { put_le(out, v, 4); }
void put64(std::string &out, uint64_t v) { put_le(out, v, 8); }

/* Guarded: an empty raft_buffer may well have a NULL base, and memcpy from
 * NULL is undefined even for zero bytes. */
void put_bytes(std::string &out, const void *p, size_t n)
{
    if (n > 0)
        out.append(static_cast<const char *>(p), n);
}

void encode_body(const struct raft_message &msg, std::string &out)
{
    switch (msg.type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const raft_append_entries &a = msg.append_entries;
        size_t data = 0;
        for (unsigned i = 0; i < a.n_entries; i++)
            data += a.entries[i].buf.len;
        out.reserve(out.size() + 4 * 8 + 4 + a.n_entries * kEntryHeaderSize + data + kCrcSize);
        put64(out, a.term);
        put64(out, a.prev_log_index);
        put64(out, a.prev_log_term);
        put64(out, a.leader_commit);
        put32(out, a.n_entries);
        /* All headers first: the decoder learns the batch size before it
         * allocates anything. */
        for (unsigned i = 0; i < a.n_entries; i++) {
            put64(out, a.entries[i].term);
            put16(out, a.entries[i].type);
            put64(out, a.entries[i].buf.len);
        }
        for (unsigned i = 0; i < a.n_entries; i++)
            put_bytes(out, a.entries[i].buf.base, a.entries[i].buf.len);
        break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        put64(out, msg.append_entries_result.term);
        put64(out, msg.append_entries_result.rejected);
        put64(out, msg.append_entries_result.last_log_index);
        break;
    case RAFT_IO_REQUEST_VOTE: {
        const raft_request_vote &v = msg.request_vote;
        put64(out, v.term);
        put64(out, v.candidate_id);
        put64(out, v.last_log_index);
        put64(out, v.last_log_term);
        put8(out, (v.disrupt_leader ? kDisruptLeader : 0) | (v.pre_vote ? kPreVote : 0));
        break;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT:
        put64(out, msg.request_vote_result.term);
        put8(out, msg.request_vote_result.vote_granted ? 1 : 0);
        put8(out, static_cast<uint8_t>(msg.request_vote_result.pre_vote));
        break;
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const raft_install_snapshot &s = msg.install_snapshot;
        out.reserve(out.size() + s.data.len + 256);
        put64(out, s.term);
        put64(out, s.last_index);
        put64(out, s.last_term);
        put64(out, s.conf_index);
        put32(out, s.conf.n);
        for (unsigned i = 0; i < s.conf.n; i++) {
            const raft_server &srv = s.conf.servers[i];
            if (srv.role < 0 || srv.role > 255)
                throw std::invalid_argument("encode_raft_message: server role out of range");
            if (srv.address == nullptr)
                throw std::invalid_argument("encode_raft_message: server without address");
            size_t alen = strlen(srv.address);
            put64(out, srv.id);
            put8(out, static_cast<uint8_t>(srv.role));
            put32(out, static_cast<uint32_t>(alen));
            put_bytes(out, srv.address, alen);
        }
        put64(out, s.data.len);
        put_bytes(out, s.data.base, s.data.len);
        break;
    }
    case RAFT_IO_TIMEOUT_NOW:
        put64(out, msg.timeout_now.term);
        put64(out, msg.timeout_now.last_log_index);
        put64(out, msg.timeout_now.last_log_term);
        break;
    default:
        throw std::invalid_argument("encode_raft_message: unknown message type");
    }
}

/* ---- reading ---- */

[[noreturn]] void malformed(const char *what) { throw RaftMessageDecodeError(what); }

/* Bounds-checked little-endian cursor over [p, p + n). */
class Reader {
  public:
    Reader(const uint8_t *p, size_t n) : p_(p), end_(p + n) {}

    size_t remaining() const { return static_cast<size_t>(end_ - p_); }

    const uint8_t *take(uint64_t n)
    {
        if (n > remaining())
            malformed("raft message: truncated");
        const uint8_t *p = p_;
        p_ += n;
        return p;
    }

    uint64_t le(size_t width)
    {
        const uint8_t *b = take(width);
        uint64_t v = 0;
        for (size_t i = 0; i < width; i++)
            v |= static_cast<uint64_t>(b[i]) << (8 * i);
        return v;
    }
    uint8_t u8() { return static_cast<uint8_t>(le(1)); }
    uint16_t u16() { return static_cast<uint16_t>(le(2)); }
    uint32_t u32() { return static_cast<uint32_t>(le(4)); }
    uint64_t u64() { return le(8); }

    bool boolean()
    {
        uint8_t b = u8();
        if (b > 1)
            malformed("raft message: boolean is neither 0 nor 1");
        return b == 1;
    }

    void expect_end()
    {
        if (remaining() != 0)
            malformed("raft message: trailing bytes");
    }

  private:
    const uint8_t *p_;
    const uint8_t *end_;
};

/* A raft_malloc'd block owned until release(): a field found bad after an
 * allocation must not leak it. */
class RaftBlock {
  public:
    explicit RaftBlock(size_t size) : p_(raft_malloc(size))
    {
        if (p_ == nullptr)
            throw std::bad_alloc();
    }
    ~RaftBlock() { raft_free(p_); }
    RaftBlock(const RaftBlock &) = delete;
    RaftBlock &operator=(const RaftBlock &) = delete;

    void *get() const { return p_; }
    void *release()
    {
        void *p = p_;
        p_ = nullptr;
        return p;
    }

  private:
    void *p_;
};

/* Same for a configuration under construction. */
class ConfGuard {
  public:
    explicit ConfGuard(raft_configuration &c) : c_(&c) { raft_configuration_init(c_); }
    ~ConfGuard()
    {
        if (c_ != nullptr)
            raft_configuration_close(c_);
    }
    ConfGuard(const ConfGuard &) = delete;
    ConfGuard &operator=(const ConfGuard &) = delete;

    void release() { c_ = nullptr; }

  private:
    raft_configuration *c_;
};

size_t pad8(size_t n) { return (n + 7) & ~static_cast<size_t>(7); }

/* Every body decoder reads its body to the very end before it lets go of its
 * allocations, so trailing garbage cannot leak them either. */

void decode_append_entries(Reader &r, raft_append_entries &a)
{
    a.term = r.u64();
    a.prev_log_index = r.u64();
    a.prev_log_term = r.u64();
    a.leader_commit = r.u64();
    uint32_t n = r.u32();
    a.n_entries = n;
    a.entries = nullptr;
    if (n == 0) {
        r.expect_end();
        return;
    }

    /* A corrupt count must not make us allocate gigabytes: the headers have
     * to be there before we size anything by them. */
    if (n > r.remaining() / kEntryHeaderSize)
        malformed("raft message: truncated");
    RaftBlock entries_block(n * sizeof(raft_entry));
    auto *entries = static_cast<raft_entry *>(entries_block.get());

    size_t data_len = 0;   /* sum of the lengths: never above the input size */
    size_t batch_len = 0;  /* the same, each entry padded to 8 bytes */
    for (uint32_t i = 0; i < n; i++) {
        raft_entry &e = entries[i];
        e.term = r.u64();
        e.type = r.u16();
        if (e.type != RAFT_COMMAND && e.type != RAFT_BARRIER && e.type != RAFT_CHANGE)
            malformed("raft message: unknown entry type");
        uint64_t len = r.u64();
        /* All data follows all headers, so what is still unread must cover
         * the data seen so far plus this entry's. */
        if (data_len > r.remaining() || len > r.remaining() - data_len)
            malformed("raft message: truncated");
        e.buf.len = static_cast<size_t>(len);
        data_len += e.buf.len;
        batch_len += pad8(e.buf.len);
    }
    if (data_len != r.remaining())
        malformed("raft message: entry data does not fill the message");

    /* c-raft (entryBatchesDestroy) asserts every entry has a batch, so there
     * is one even when all entries are empty.  raft_malloc is malloc by
     * default, so the batch itself is 16-byte aligned and every entry
     * starting at a multiple of 8 inside it is 8-byte aligned. */
    RaftBlock batch_block(batch_len > 0 ? batch_len : 1);
    auto *batch = static_cast<uint8_t *>(batch_block.get());
    size_t offset = 0;
    for (uint32_t i = 0; i < n; i++) {
        raft_entry &e = entries[i];
        const uint8_t *src = r.take(e.buf.len);
        e.batch = batch;
        if (e.buf.len == 0) {
            e.buf.base = nullptr; /* as uvDecodeEntriesBatch does */
            continue;
        }
        memcpy(batch + offset, src, e.buf.len);
        e.buf.base = batch + offset;
        offset += pad8(e.buf.len);
    }
    r.expect_end();

    batch_block.release();
    a.entries = static_cast<raft_entry *>(entries_block.release());
}

void decode_install_snapshot(Reader &r, raft_install_snapshot &s)
{
    s.term = r.u64();
    s.last_index = r.u64();
    s.last_term = r.u64();
    s.conf_index = r.u64();

    ConfGuard conf_guard(s.conf);
    uint32_t n = r.u32();
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = r.u64();
        uint8_t role = r.u8();
        uint32_t alen = r.u32();
        const uint8_t *addr = r.take(alen);
        /* Checked here rather than left to raft_configuration_add, which
         * asserts id != 0 and reads the address as a C string. */
        if (id == 0)
            malformed("raft message: server id 0");
        if (role != RAFT_STANDBY && role != RAFT_VOTER && role != RAFT_SPARE)
            malformed("raft message: unknown server role");
        if (memchr(addr, '\0', alen) != nullptr)
            malformed("raft message: NUL in server address");
        std::string address(reinterpret_cast<const char *>(addr), alen);
        int rv = raft_configuration_add(&s.conf, id, address.c_str(), role);
        if (rv == RAFT_NOMEM)
            throw std::bad_alloc();
        if (rv != 0)
            malformed("raft message: duplicate server id or address");
    }

    uint64_t data_len = r.u64();
    const uint8_t *data = r.take(data_len);
    r.expect_end();

    s.data.len = static_cast<size_t>(data_len);
    s.data.base = nullptr;
    if (s.data.len > 0) {
        RaftBlock block(s.data.len);
        memcpy(block.get(), data, s.data.len);
        s.data.base = block.release();
    }
    conf_guard.release();
}

} // namespace

uint32_t raft_message_crc32c(const void *data, size_t len)
{
    const auto *p = static_cast<const uint8_t *>(data);
    uint32_t crc = 0xFFFFFFFFu;
    for (; len >= 8; p += 8, len -= 8) {
        uint32_t lo = crc ^ (p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24);
        uint32_t hi = p[4] | p[5] << 8 | p[6] << 16 | static_cast<uint32_t>(p[7]) << 24;
        crc = kCrc[7][lo & 0xFF] ^ kCrc[6][(lo >> 8) & 0xFF] ^ kCrc[5][(lo >> 16) & 0xFF] ^
              kCrc[4][lo >> 24] ^ kCrc[3][hi & 0xFF] ^ kCrc[2][(hi >> 8) & 0xFF] ^
              kCrc[1][(hi >> 16) & 0xFF] ^ kCrc[0][hi >> 24];
    }
    for (; len > 0; p++, len--)
        crc = kCrc[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

void encode_raft_message(const struct raft_message &msg, std::string &out)
{
    const size_t start = out.size();
    try {
        put8(out, kRaftMessageFormat);
        put8(out, static_cast<uint8_t>(msg.type));
        put64(out, 0); /* length, patched below once known */
        encode_body(msg, out);
    } catch (...) {
        out.resize(start); /* leave out as we found it */
        throw;
    }

    uint64_t total = out.size() - start + kCrcSize;
    for (size_t i = 0; i < 8; i++)
        out[start + 2 + i] = static_cast<char>(total >> (8 * i));
    put32(out, raft_message_crc32c(out.data() + start, out.size() - start));
}

void decode_raft_message(const void *data, size_t len, struct raft_message &msg)
{
    if (len < kHeaderSize + kCrcSize)
        malformed("raft message: truncated");
    const auto *bytes = static_cast<const uint8_t *>(data);

    Reader header(bytes, kHeaderSize);
    if (header.u8() != kRaftMessageFormat)
        malformed("raft message: unknown format");
    uint8_t type = header.u8();
    if (header.u64() != len)
        malformed("raft message: length field does not match the message");
    /* Checked before anything is parsed or allocated. */
    Reader trailer(bytes + len - kCrcSize, kCrcSize);
    if (trailer.u32() != raft_message_crc32c(bytes, len - kCrcSize))
        malformed("raft message: checksum mismatch");

    Reader body(bytes + kHeaderSize, len - kHeaderSize - kCrcSize);
    raft_message out{};
    out.type = type;
    switch (type) {
    case RAFT_IO_APPEND_ENTRIES:
        decode_append_entries(body, out.append_entries);
        break;
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        out.append_entries_result.term = body.u64();
        out.append_entries_result.rejected = body.u64();
        out.append_entries_result.last_log_index = body.u64();
        body.expect_end();
        break;
    case RAFT_IO_REQUEST_VOTE: {
        out.request_vote.term = body.u64();
        out.request_vote.candidate_id = body.u64();
        out.request_vote.last_log_index = body.u64();
        out.request_vote.last_log_term = body.u64();
        uint8_t flags = body.u8();
        if (flags & ~(kDisruptLeader | kPreVote))
            malformed("raft message: unknown request vote flags");
        out.request_vote.disrupt_leader = (flags & kDisruptLeader) != 0;
        out.request_vote.pre_vote = (flags & kPreVote) != 0;
        body.expect_end();
        break;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        out.request_vote_result.term = body.u64();
        out.request_vote_result.vote_granted = body.boolean();
        uint8_t pre_vote = body.u8();
        if (pre_vote > raft_tribool_false)
            malformed("raft message: bad pre_vote tribool");
        out.request_vote_result.pre_vote = static_cast<raft_tribool>(pre_vote);
        body.expect_end();
        break;
    }
    case RAFT_IO_INSTALL_SNAPSHOT:
        decode_install_snapshot(body, out.install_snapshot);
        break;
    case RAFT_IO_TIMEOUT_NOW:
        out.timeout_now.term = body.u64();
        out.timeout_now.last_log_index = body.u64();
        out.timeout_now.last_log_term = body.u64();
        body.expect_end();
        break;
    default:
        malformed("raft message: unknown message type");
    }

    out.server_id = msg.server_id;
    out.server_address = msg.server_address;
    msg = out;
}

void free_decoded_raft_message(struct raft_message &msg)
{
    switch (msg.type) {
    case RAFT_IO_APPEND_ENTRIES: {
        raft_append_entries &a = msg.append_entries;
        if (a.entries != nullptr) {
            /* One batch shared by all entries, as decode builds it. */
            if (a.n_entries > 0)
                raft_free(a.entries[0].batch);
            raft_free(a.entries);
        }
        a.entries = nullptr;
        a.n_entries = 0;
        break;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
        raft_install_snapshot &s = msg.install_snapshot;
        raft_configuration_close(&s.conf);
        raft_configuration_init(&s.conf);
        raft_free(s.data.base);
        s.data.base = nullptr;
        s.data.len = 0;
        break;
    }
    default:
        break;
    }
}

} // namespace atomix
