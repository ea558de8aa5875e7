/*
 * codec.h — the wire form of atomix commands and of the packed Raft entries
 * that carry them.
 *
 * Pure C++ (no Postgres): the backend encodes one Command, the raft worker
 * packs many of them behind one EntryHeader into a single raft buffer (c-raft
 * 0.15 only calls back for the first buffer of a multi-buffer apply), and the
 * state machine decodes them on every replica.  Everything is little-endian
 * fixed-width so replicas on any host decode the same bytes the same way.
 */
#ifndef ATOMIX_CODEC_H
#define ATOMIX_CODEC_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace atomix {

enum class Op : uint8_t {
    MapPut = 1,
    MapInsert = 2,
    MapRemove = 3,
    MapClear = 4,
    CounterSet = 5,
    CounterIncr = 6,
    CounterCas = 7,
    /* Carries no state change: lets a read wait until everything committed
     * before it has been applied (a linearizable read barrier). */
    Barrier = 8,
    /* Sessions (session, epoch identify the caller's session). */
    SessionKeepAlive = 9, /* arg1 node, ttl_us timeout, value: live session ids, arg2 max seq */
    SessionClose = 10,
    LockAcquire = 11,     /* arg1: 1 = wait (until ttl_us when HasTtl) */
    LockRelease = 12,
    WaitCancel = 13,      /* key: kind of the waited object, arg1: the waiting request id */
    SemaphoreCreate = 14, /* arg1 permits */
    SemaphoreAcquire = 15, /* arg1 permits, arg2: 1 = wait (until ttl_us when HasTtl) */
    SemaphoreRelease = 16, /* arg1 permits */
    ElectionEnter = 17,   /* key: candidate */
    ElectionWithdraw = 18,
    ElectionAnoint = 19,
    ElectionPromote = 20,
    ElectionEvict = 21,
    IdReserve = 22,       /* arg1: block size */
    ValueSet = 23,
    ValueDelete = 24,
    SetAdd = 25,
    SetRemove = 26,
    MapCommit = 27,       /* value: encoded MapCommitOps */
    /* Proposed by a new leader: no node lease may run out because of the
     * election (log time jumps over it). */
    LeasesRenew = 28,
};
constexpr uint8_t kLastOp = static_cast<uint8_t>(Op::LeasesRenew);

/* The SQL-ish name of an op, for log lines ("map_put", "lock_acquire"). */
const char *op_name(Op op);

constexpr uint8_t kFlagHasTtl = 1;
constexpr uint8_t kFlagHasIfVersion = 2;
/* A resend of a command whose first attempt may have been committed: the
 * state machine answers it from its recorded outcome instead of applying it
 * again. */
constexpr uint8_t kFlagRetry = 4;
/* Byte offsets inside an encoded command, for the worker to patch. */
constexpr size_t kCommandFlagsOffset = 1;
constexpr size_t kCommandRequestIdOffset = 2;
constexpr size_t kCommandFloorOffset = 10;

struct Command {
    Op op = Op::Barrier;
    uint8_t flags = 0;
    /* Identifies the waiting caller; opaque to the state machine. */
    uint64_t request_id = 0;
    /* The lowest request id the command's origin node still holds when it
     * sends it (request_origins.h); 0 in entries written before floors. */
    uint64_t floor = 0;
    /* The caller's session (node id << 48 | sequence) and its node's
     * incarnation (Unix µs when that node's shared memory was created). */
    uint64_t session = 0;
    int64_t epoch = 0;
    std::string name;  /* map or counter name */
    std::string key;   /* map key */
    std::string value; /* map value bytes */
    int64_t ttl_us = 0;
    int64_t if_version = 0;
    int64_t arg1 = 0; /* counter: value, delta or expected */
    int64_t arg2 = 0; /* counter: new value for cas */

    bool has_ttl() const { return flags & kFlagHasTtl; }
    bool has_if_version() const { return flags & kFlagHasIfVersion; }
    bool is_retry() const { return flags & kFlagRetry; }
};

/* Every packed entry starts with this.  stamp_us is the proposing leader's
 * wall clock (µs since the Unix epoch): the only clock the state machine ever
 * reads, so TTL expiry is decided identically on every replica. */
struct EntryHeader {
    static constexpr uint32_t kMagic = 0x41544d58; /* "ATMX" */
    /* 3: commands carry their origin's floor; 2 (read still): they do not */
    static constexpr uint8_t kFormat = 3;
    int64_t stamp_us = 0;
    uint32_t count = 0;
};

constexpr size_t kEntryHeaderSize = 4 + 1 + 8 + 4;

class DecodeError : public std::exception {
  public:
    explicit DecodeError(const char *what) : what_(what) {}
    const char *what() const noexcept override { return what_; }

  private:
    const char *what_;
};

/* Appends the encoding of cmd to out. */
void encode_command(const Command &cmd, std::string &out);
size_t encoded_command_size(const Command &cmd);

/* Writes a header; count may be patched later with patch_entry_count. */
void encode_entry_header(const EntryHeader &h, std::string &out);
void patch_entry_count(std::string &entry, uint32_t count);

/* Sequential reader over one packed entry.  Throws DecodeError on any
 * malformed or truncated input — it never reads past `len`. */
class EntryReader {
  public:
    EntryReader(const void *data, size_t len);
    const EntryHeader &header() const { return header_; }
    bool next(Command &cmd); /* false once `count` commands were read */

  private:
    const uint8_t *p_;
    const uint8_t *end_;
    EntryHeader header_;
    uint8_t format_ = EntryHeader::kFormat;
    uint32_t read_ = 0;
};

/* One write of a map_commit, and the list's encoding (in Command::value). */
struct MapCommitOp {
    bool remove = false;
    std::string key;
    std::string value;
    bool has_if_version = false;
    int64_t if_version = 0;
    int64_t ttl_us = 0; /* 0: no ttl */
};
void encode_commit_ops(const std::vector<MapCommitOp> &ops, std::string &out);
std::vector<MapCommitOp> decode_commit_ops(const std::string &data);

/* Decodes one stand-alone command (as written by encode_command). */
Command decode_command(const void *data, size_t len);

/* Rewrites the request id / floor inside an encoded command. */
void patch_request_id(std::string &encoded, uint64_t id);
void patch_request_floor(std::string &encoded, uint64_t floor);

/* Little-endian helpers shared with the snapshot format. */
class ByteWriter {
  public:
    explicit ByteWriter(std::string &out) : out_(out) {}
    void u8(uint8_t v);
    void u32(uint32_t v);
    void u64(uint64_t v);
    void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
    void bytes(const std::string &s); /* u32 length + bytes */

  private:
    std::string &out_;
};

class ByteReader {
  public:
    ByteReader(const void *data, size_t len)
        : p_(static_cast<const uint8_t *>(data)), end_(p_ + len) {}
    uint8_t u8();
    uint32_t u32();
    uint64_t u64();
    int64_t i64() { return static_cast<int64_t>(u64()); }
    std::string bytes();
    bool at_end() const { return p_ == end_; }
    const uint8_t *position() const { return p_; }

  private:
    void need(size_t n) const;
    const uint8_t *p_;
    const uint8_t *end_;
};

} // namespace atomix

#endif
