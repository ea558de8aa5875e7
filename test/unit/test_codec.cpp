/*
 * test_codec.cpp — the wire format of commands and packed entries.
 *
 * Every replica decodes the same bytes, so the format must round-trip
 * exactly, stay byte-for-byte stable, and reject damaged input with
 * DecodeError without ever reading outside the buffer.  The build runs this
 * under ASan/UBSan; decoding always works on exact-size heap copies so that
 * a one-byte over-read is caught.
 */
#include "unit_helpers.h"

#include <cstring>
#include <limits>
#include <memory>

using namespace atomix;
using namespace unit;

namespace {

/* An exact-size heap copy: std::string would hide over-reads behind its
 * terminating NUL and spare capacity. */
struct ExactBuffer {
    explicit ExactBuffer(const std::string &s, size_t len)
        : data(new uint8_t[len ? len : 1]), size(len)
    {
        memcpy(data.get(), s.data(), len);
    }
    std::unique_ptr<uint8_t[]> data;
    size_t size;
};

std::string all_bytes()
{
    std::string s;
    for (int i = 0; i < 256; i++)
        s.push_back(static_cast<char>(i));
    return s;
}

/* A command with every field set to something distinctive. */
Command full_command(Op op)
{
    Command c;
    c.op = op;
    c.flags = kFlagHasTtl | kFlagHasIfVersion;
    c.request_id = 0xfedcba9876543210ULL;
    c.name = std::string("na\0me", 5);
    c.key = all_bytes();
    c.value = std::string("\0\xff\0", 3);
    c.ttl_us = -1;
    c.if_version = std::numeric_limits<int64_t>::min();
    c.arg1 = std::numeric_limits<int64_t>::max();
    c.arg2 = -1234567890123LL;
    return c;
}

void assert_same(const Command &a, const Command &b)
{
    assert_int_equal(static_cast<int>(a.op), static_cast<int>(b.op));
    assert_int_equal(a.flags, b.flags);
    assert_true(a.request_id == b.request_id);
    assert_true(a.name == b.name);
    assert_true(a.key == b.key);
    assert_true(a.value == b.value);
    assert_true(a.ttl_us == b.ttl_us);
    assert_true(a.if_version == b.if_version);
    assert_true(a.arg1 == b.arg1);
    assert_true(a.arg2 == b.arg2);
}

Command round_trip(const Command &c)
{
    std::string wire;
    encode_command(c, wire);
    assert_int_equal(wire.size(), encoded_command_size(c));
    ExactBuffer buf(wire, wire.size());
    return decode_command(buf.data.get(), buf.size);
}

/* Decodes a whole packed entry; throws what the reader throws. */
std::vector<Command> read_entry(const void *data, size_t len, EntryHeader *header = nullptr)
{
    EntryReader reader(data, len);
    if (header)
        *header = reader.header();
    std::vector<Command> out;
    Command c;
    while (reader.next(c))
        out.push_back(c);
    return out;
}

enum class Outcome { Decoded, DecodeError, OtherException };

template <typename F> Outcome outcome_of(F f)
{
    try {
        f();
        return Outcome::Decoded;
    } catch (const DecodeError &) {
        return Outcome::DecodeError;
    } catch (...) {
        return Outcome::OtherException;
    }
}

std::vector<Command> mixed_commands(size_t n)
{
    std::vector<Command> cmds;
    for (size_t i = 0; i < n; i++) {
        Command c = full_command(static_cast<Op>(1 + i % 8));
        c.request_id = i;
        c.key = "k" + std::to_string(i);
        c.value.assign(i % 7, static_cast<char>(i));
        c.arg1 = static_cast<int64_t>(i) - 3;
        cmds.push_back(c);
    }
    return cmds;
}

} // namespace

static void every_op_round_trips_with_all_fields(void **)
{
    for (int op = 1; op <= 8; op++) {
        Command c = full_command(static_cast<Op>(op));
        assert_same(c, round_trip(c));
    }
}

static void empty_fields_round_trip(void **)
{
    for (int op = 1; op <= 8; op++) {
        Command c;
        c.op = static_cast<Op>(op);
        Command d = round_trip(c);
        assert_same(c, d);
        assert_true(d.name.empty() && d.key.empty() && d.value.empty());
        assert_false(d.has_ttl());
        assert_false(d.has_if_version());
    }
}

static void flag_accessors(void **)
{
    Command c;
    assert_false(c.has_ttl());
    c.flags = kFlagHasTtl;
    assert_true(c.has_ttl());
    assert_false(c.has_if_version());
    c.flags = kFlagHasIfVersion;
    assert_false(c.has_ttl());
    assert_true(c.has_if_version());
}

static void one_mib_value_round_trips(void **)
{
    Command c = full_command(Op::MapPut);
    c.value.resize(1 << 20);
    for (size_t i = 0; i < c.value.size(); i++)
        c.value[i] = static_cast<char>((i * 131) ^ (i >> 8)); /* includes NULs */
    assert_same(c, round_trip(c));

    /* and inside a packed entry, next to a small command */
    std::string entry = pack(42, {c, cmd_of(Op::Barrier)});
    ExactBuffer buf(entry, entry.size());
    std::vector<Command> got = read_entry(buf.data.get(), buf.size);
    assert_int_equal(got.size(), 2);
    assert_same(c, got[0]);

    /* truncation anywhere inside the big value is detected */
    for (size_t cut : {entry.size() - 1, entry.size() / 2, kEntryHeaderSize + 40}) {
        ExactBuffer shortened(entry, cut);
        assert_true(outcome_of([&] { read_entry(shortened.data.get(), cut); }) ==
                    Outcome::DecodeError);
    }
}

static void packed_entry_with_many_commands(void **)
{
    std::vector<Command> cmds = mixed_commands(5000);
    std::string entry = pack(-7, cmds); /* stamps are opaque to the codec */
    ExactBuffer buf(entry, entry.size());

    EntryHeader h;
    std::vector<Command> got = read_entry(buf.data.get(), buf.size, &h);
    assert_true(h.stamp_us == -7);
    assert_int_equal(h.count, cmds.size());
    assert_int_equal(got.size(), cmds.size());
    for (size_t i = 0; i < cmds.size(); i++)
        assert_same(cmds[i], got[i]);
}

static void empty_entry(void **)
{
    std::string entry = pack(1, {});
    assert_int_equal(entry.size(), kEntryHeaderSize);
    ExactBuffer buf(entry, entry.size());
    EntryReader reader(buf.data.get(), buf.size);
    Command c;
    assert_false(reader.next(c));
    assert_false(reader.next(c)); /* stays exhausted */
}

/* The byte layout is shared by every replica and by stored logs: pin it. */
static void wire_layout_is_pinned(void **)
{
    std::string out;
    EntryHeader h;
    h.stamp_us = 0x0102030405060708LL;
    h.count = 0x0a0b0c0d;
    encode_entry_header(h, out);
    const char header[] = "XMTA\x03"
                          "\x08\x07\x06\x05\x04\x03\x02\x01"
                          "\x0d\x0c\x0b\x0a";
    assert_int_equal(out.size(), kEntryHeaderSize);
    assert_memory_equal(out.data(), header, kEntryHeaderSize);

    Command c = cmd_of(Op::MapPut, "m", "k", "v");
    c.request_id = 9;
    c.floor = 6;
    c.session = 0x0001000000000003ULL;
    c.epoch = 5;
    c.arg2 = -1;
    std::string wire;
    encode_command(c, wire);
    std::string expect("\x01\x00"                         /* op, flags */
                       "\x09\x00\x00\x00\x00\x00\x00\x00" /* request id */
                       "\x06\x00\x00\x00\x00\x00\x00\x00" /* floor */
                       "\x03\x00\x00\x00\x00\x00\x01\x00" /* session */
                       "\x05\x00\x00\x00\x00\x00\x00\x00" /* epoch */
                       "\x01\x00\x00\x00m"
                       "\x01\x00\x00\x00k"
                       "\x01\x00\x00\x00v"
                       "\x00\x00\x00\x00\x00\x00\x00\x00" /* ttl */
                       "\x00\x00\x00\x00\x00\x00\x00\x00" /* if_version */
                       "\x00\x00\x00\x00\x00\x00\x00\x00" /* arg1 */
                       "\xff\xff\xff\xff\xff\xff\xff\xff", /* arg2 */
                       81);
    assert_true(wire == expect);
    assert_int_equal(encoded_command_size(c), wire.size());
    patch_request_id(wire, 0x1234);
    patch_request_floor(wire, 0x1230);
    Command back = decode_command(wire.data(), wire.size());
    assert_true(back.request_id == 0x1234 && back.floor == 0x1230);
}

/* Entries of format 2 (atomix 0.4: commands without a floor) stay in Raft
 * logs across the upgrade and still decode, with floor 0. */
static void format_2_entries_still_decode(void **)
{
    Command c = cmd_of(Op::MapPut, "m", "k", "v");
    c.request_id = 9;
    c.floor = 6;
    std::string entry = pack(1, {c, c});
    std::string old = entry.substr(0, kEntryHeaderSize);
    old[4] = 2;
    std::string one;
    encode_command(c, one);
    one.erase(kCommandFloorOffset, 8);
    old += one + one;
    std::vector<Command> got = read_entry(old.data(), old.size(), nullptr);
    assert_int_equal(got.size(), 2);
    assert_true(got[1].request_id == 9 && got[1].floor == 0 && got[1].value == "v");
}

static void byte_reader_writer(void **)
{
    std::string out;
    ByteWriter w(out);
    w.u8(0xab);
    w.u32(0x01020304);
    w.u64(0x1122334455667788ULL);
    w.i64(-2);
    w.bytes(std::string("\0z", 2));
    w.bytes("");
    assert_memory_equal(out.data(), "\xab\x04\x03\x02\x01", 5);

    ExactBuffer buf(out, out.size());
    ByteReader r(buf.data.get(), buf.size);
    assert_int_equal(r.u8(), 0xab);
    assert_int_equal(r.u32(), 0x01020304);
    assert_true(r.u64() == 0x1122334455667788ULL);
    assert_true(r.i64() == -2);
    assert_true(r.bytes() == std::string("\0z", 2));
    assert_true(r.bytes().empty());
    assert_true(r.at_end());
    assert_true(outcome_of([&] { r.u8(); }) == Outcome::DecodeError);
}

static void patch_entry_count_works(void **)
{
    std::vector<Command> cmds = mixed_commands(3);
    std::string entry = pack(5, {}); /* the worker writes 0, then patches */
    for (const Command &c : cmds)
        encode_command(c, entry);
    std::string before = entry;

    patch_entry_count(entry, 3);
    /* only the 4 count bytes at the end of the header change */
    assert_int_equal(entry.size(), before.size());
    assert_memory_equal(entry.data(), before.data(), kEntryHeaderSize - 4);
    assert_memory_equal(entry.data() + kEntryHeaderSize - 4, "\x03\x00\x00\x00", 4);
    assert_memory_equal(entry.data() + kEntryHeaderSize, before.data() + kEntryHeaderSize,
                        entry.size() - kEntryHeaderSize);

    ExactBuffer buf(entry, entry.size());
    EntryHeader h;
    std::vector<Command> got = read_entry(buf.data.get(), buf.size, &h);
    assert_int_equal(h.count, 3);
    assert_true(h.stamp_us == 5);
    assert_int_equal(got.size(), 3);
    for (size_t i = 0; i < 3; i++)
        assert_same(cmds[i], got[i]);

    patch_entry_count(entry, 0xfffffffe);
    assert_memory_equal(entry.data() + kEntryHeaderSize - 4, "\xfe\xff\xff\xff", 4);

    /* a buffer too short to hold a header cannot be patched */
    for (size_t len = 0; len < kEntryHeaderSize; len++) {
        std::string tiny = entry.substr(0, len);
        assert_true(outcome_of([&] { patch_entry_count(tiny, 1); }) == Outcome::DecodeError);
        assert_true(tiny == entry.substr(0, len));
    }
}

/* Every proper prefix of a valid entry/command must be rejected. */
static void truncation_at_every_length_throws(void **)
{
    std::string entry = pack(77, mixed_commands(9));
    for (size_t len = 0; len < entry.size(); len++) {
        ExactBuffer buf(entry, len);
        assert_true(outcome_of([&] { read_entry(buf.data.get(), len); }) ==
                    Outcome::DecodeError);
    }

    std::string wire;
    encode_command(full_command(Op::CounterCas), wire);
    for (size_t len = 0; len < wire.size(); len++) {
        ExactBuffer buf(wire, len);
        assert_true(outcome_of([&] { decode_command(buf.data.get(), len); }) ==
                    Outcome::DecodeError);
    }
    /* and a stand-alone command must not have anything after it */
    std::string longer = wire + '\0';
    ExactBuffer buf(longer, longer.size());
    assert_true(outcome_of([&] { decode_command(buf.data.get(), buf.size); }) ==
                Outcome::DecodeError);
}

/* Damage to any byte either decodes to something or throws DecodeError;
 * nothing else (no bad_alloc from a huge length, no over-read: ASan). */
static void corruption_at_every_byte_is_contained(void **)
{
    std::string entry = pack(3, mixed_commands(4));
    for (size_t pos = 0; pos < entry.size(); pos++) {
        const uint8_t orig = static_cast<uint8_t>(entry[pos]);
        for (uint8_t v : {uint8_t(0x00), uint8_t(0xff), uint8_t(0x7f), uint8_t(orig ^ 0x01),
                          uint8_t(orig ^ 0x80)}) {
            std::string bad = entry;
            bad[pos] = static_cast<char>(v);
            ExactBuffer buf(bad, bad.size());
            Outcome o = outcome_of([&] { read_entry(buf.data.get(), buf.size); });
            if (o == Outcome::OtherException)
                fail_msg("byte %zu set to 0x%02x: exception other than DecodeError", pos, v);
        }
    }
}

static void bad_header_and_op_rejected(void **)
{
    std::string entry = pack(1, {cmd_of(Op::MapPut, "m", "k", "v")});
    auto rejects = [](std::string bytes) {
        ExactBuffer buf(bytes, bytes.size());
        return outcome_of([&] { read_entry(buf.data.get(), buf.size); }) ==
               Outcome::DecodeError;
    };
    std::string bad_magic = entry;
    bad_magic[0] = 'Y';
    assert_true(rejects(bad_magic));
    std::string bad_format = entry;
    bad_format[4] = 1; /* the format before sessions */
    assert_true(rejects(bad_format));
    for (uint8_t op : {uint8_t(0), uint8_t(kLastOp + 1), uint8_t(0xff)}) {
        std::string bad_op = entry;
        bad_op[kEntryHeaderSize] = static_cast<char>(op);
        assert_true(rejects(bad_op));
    }
    /* count larger than what the buffer holds */
    std::string overcount = entry;
    patch_entry_count(overcount, 0xffffffff);
    assert_true(rejects(overcount));
    /* a length field claiming 4 GiB must not allocate, just fail */
    std::string huge_len = entry;
    memcpy(&huge_len[kEntryHeaderSize + 34], "\xff\xff\xff\xff", 4); /* the name length */
    assert_true(rejects(huge_len));
    /* nullptr with length 0 is simply "too short" */
    assert_true(outcome_of([] { EntryReader r(nullptr, 0); }) == Outcome::DecodeError);
}

/* EntryReader's contract (codec.h) is to throw on *any* malformed input, and
 * decode_command rejects trailing bytes; bytes after the last of `count`
 * commands mean the header's count is wrong (e.g. a forgotten
 * patch_entry_count), and silently dropping those commands would leave their
 * callers without a reply on every replica. */
static void entry_with_bytes_after_last_command_rejected(void **)
{
    Outcome o;
    { /* scoped so that a failure below (a longjmp) leaks nothing */
        std::string entry = pack(1, mixed_commands(3));
        patch_entry_count(entry, 2); /* says 2, holds 3 */
        ExactBuffer buf(entry, entry.size());
        o = outcome_of([&] { read_entry(buf.data.get(), buf.size); });
    }
    if (o != Outcome::DecodeError)
        fail_msg("entry whose count (2) is smaller than the commands it holds (3) "
                 "was accepted; the 3rd command is silently dropped");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_op_round_trips_with_all_fields),
        cmocka_unit_test(empty_fields_round_trip),
        cmocka_unit_test(flag_accessors),
        cmocka_unit_test(one_mib_value_round_trips),
        cmocka_unit_test(packed_entry_with_many_commands),
        cmocka_unit_test(empty_entry),
        cmocka_unit_test(wire_layout_is_pinned),
        cmocka_unit_test(format_2_entries_still_decode),
        cmocka_unit_test(byte_reader_writer),
        cmocka_unit_test(patch_entry_count_works),
        cmocka_unit_test(truncation_at_every_length_throws),
        cmocka_unit_test(corruption_at_every_byte_is_contained),
        cmocka_unit_test(bad_header_and_op_rejected),
        cmocka_unit_test(entry_with_bytes_after_last_command_rejected),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
