/*
 * raft_message_codec.h — the wire form of c-raft's RPC messages on the node
 * transport.
 *
 * The node transport multiplexes every partition's Raft group over one TCP
 * connection per peer, so it takes over each group's raft_io->send: the
 * sender encodes the struct raft_message here, the receiver decodes it and
 * hands it to the recv_cb raft registered through raft_io->start.  c-raft then
 * OWNS what decode allocated and frees it with raft_free, so decode builds
 * exactly the shapes c-raft 0.15's own receive path (uv_recv.c) builds:
 *
 *   APPEND_ENTRIES    entries: one raft_malloc'd array of n_entries; batch:
 *                     ONE raft_malloc'd buffer holding every entry's data,
 *                     each entry starting at an 8-byte aligned offset;
 *                     entries[i].batch == that buffer for every i, and
 *                     entries[i].buf.base points into it (NULL when
 *                     buf.len == 0, as c-raft does).  n_entries == 0 means
 *                     entries == NULL and no batch.  c-raft frees it with
 *                     raft_free(entries[0].batch) + raft_free(entries)
 *                     (recv_append_entries.c) or entryBatchesDestroy().
 *   INSTALL_SNAPSHOT  conf: built with raft_configuration_init/add (freed by
 *                     raft_configuration_close); data.base: raft_malloc'd
 *                     (NULL when data.len == 0).  c-raft either frees both or
 *                     moves them into the snapshot it installs.
 *   other types       nothing allocated.
 *
 * server_id / server_address are not on the wire: the transport knows which
 * peer a connection belongs to and fills them in before calling recv_cb.
 *
 * Wire layout (all integers little-endian, fixed width, no padding):
 *
 *   u8   format            kRaftMessageFormat (1); anything else is rejected
 *   u8   type              RAFT_IO_* (1..6)
 *   u64  length            bytes of the whole message, this header and the
 *                          trailing checksum included (self-delimiting: a
 *                          reader needs only these 10 bytes to find the end)
 *   ...  body              by type, below
 *   u32  crc               CRC-32C (Castagnoli) of every byte before it
 *
 *   APPEND_ENTRIES         u64 term, u64 prev_log_index, u64 prev_log_term,
 *                          u64 leader_commit, u32 n_entries,
 *                          n_entries x { u64 term, u16 type, u64 len },
 *                          then the n_entries data blocks back to back (len
 *                          bytes each, no padding)
 *   APPEND_ENTRIES_RESULT  u64 term, u64 rejected, u64 last_log_index
 *   REQUEST_VOTE           u64 term, u64 candidate_id, u64 last_log_index,
 *                          u64 last_log_term,
 *                          u8 flags (bit 0 disrupt_leader, bit 1 pre_vote)
 *   REQUEST_VOTE_RESULT    u64 term, u8 vote_granted (0/1),
 *                          u8 pre_vote (raft_tribool: 0 unknown, 1 true,
 *                          2 false)
 *   INSTALL_SNAPSHOT       u64 term, u64 last_index, u64 last_term,
 *                          u64 conf_index, u32 n_servers,
 *                          n_servers x { u64 id, u8 role, u32 address_len,
 *                                        address bytes (no NUL) },
 *                          u64 data_len, data bytes
 *   TIMEOUT_NOW            u64 term, u64 last_log_index, u64 last_log_term
 *
 * The checksum is there because a framing slip in our own multiplexer (or a
 * corruption TCP's 16-bit checksum lets through) must never reach Raft as a
 * plausible message: without it a flipped byte in a term or index decodes
 * fine.  Beyond the checksum the decoder is strict anyway (exact length,
 * known entry types and roles, 0/1 booleans, no unknown flag bits, no
 * trailing bytes), so an encoder bug cannot smuggle in values c-raft's own
 * decoder would refuse.
 *
 * Pure C++17 plus c-raft: no Postgres headers.
 */
#ifndef ATOMIX_RAFT_MESSAGE_CODEC_H
#define ATOMIX_RAFT_MESSAGE_CODEC_H

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "raft_include.h"

namespace atomix {

constexpr uint8_t kRaftMessageFormat = 1;

/* Malformed, truncated or corrupted input.  what() is a static string. */
class RaftMessageDecodeError : public std::exception {
  public:
    explicit RaftMessageDecodeError(const char *what) : what_(what) {}
    const char *what() const noexcept override { return what_; }

  private:
    const char *what_;
};

/* Appends the encoding of msg (every field of its type, not server_id /
 * server_address) to out.  Throws std::invalid_argument for an unknown
 * message type, a server role outside 0..255 or a NULL server address —
 * none of which c-raft produces. */
void encode_raft_message(const struct raft_message &msg, std::string &out);

/* Decodes exactly len bytes (one whole message) into msg.type and msg's
 * union, allocating as described above; server_id and server_address are left
 * untouched for the caller.  Throws RaftMessageDecodeError on bad input and
 * std::bad_alloc when raft_malloc fails; either way nothing stays allocated
 * and msg is unchanged. */
void decode_raft_message(const void *data, size_t len, struct raft_message &msg);

/* Releases what decode_raft_message allocated, for a message that is NOT
 * handed to c-raft after all (after recv_cb, c-raft owns it).  Leaves the
 * message with no entries / an empty configuration and no data. */
void free_decoded_raft_message(struct raft_message &msg);

/* CRC-32C of len bytes: the trailing checksum above. */
uint32_t raft_message_crc32c(const void *data, size_t len);

} // namespace atomix

#endif
