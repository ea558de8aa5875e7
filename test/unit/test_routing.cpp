/*
 * test_routing.cpp — the partition hash.
 *
 * The hash decides where existing state lives, so it must never change: the
 * values below were computed once with the implementation (and checked
 * against an independent Python transcription of FNV-1a + the final mix).
 * If one of them fails, the hash changed and existing clusters would route
 * keys to the wrong partitions.
 */
#include "unit_helpers.h"

#include <algorithm>
#include <set>

#include "routing.h"

using namespace atomix;

static void hash_values_are_pinned(void **)
{
    struct Known {
        std::string a, b;
        uint64_t hash;
    };
    const Known known[] = {
        {"", "", 0xa5e0dba6c385580aULL},
        {"orders", "o-17", 0x2e4a1c460db57eadULL},
        {"ab", "c", 0x0495f5d642268de7ULL},
        {"a", "bc", 0x028d4aba4bf993b3ULL},
        {"map", std::string("\0key", 4), 0x27520a9303d4691eULL},
        {"counter", std::string("\x01", 1), 0xadf6bd3f407cb1fbULL},
        {"jobs", "", 0x0c048024bac35596ULL},
        {"\xff\x80", "\xc3\xa9", 0x90fb775842eede29ULL}, /* high bytes are unsigned */
        {std::string(1000, 'x'), "", 0x0d2bcf19097479a7ULL},
    };
    for (const Known &k : known) {
        uint64_t h = hash_parts(k.a, k.b);
        if (h != k.hash)
            fail_msg("hash_parts(len %zu, len %zu) = 0x%016llx, pinned 0x%016llx", k.a.size(),
                     k.b.size(), (unsigned long long)h, (unsigned long long)k.hash);
    }
    /* and the partition functions built on it */
    assert_int_equal(map_partition("orders", "o-17", 16), 13);
    assert_int_equal(counter_partition("hits", 16), 12);
    assert_int_equal(counter_partition("hits", 7), 4);
    assert_int_equal(map_partition("", "", 1024), 10);
    assert_true(hash_parts("hits", std::string("\x01", 1)) == 0x5d2f5e26ccff036cULL);
}

static void partitions_in_range(void **)
{
    for (uint32_t parts : {1u, 2u, 7u, 16u, 64u, 1000u}) {
        for (int i = 0; i < 500; i++) {
            std::string k = "key-" + std::to_string(i);
            assert_true(map_partition("m", k, parts) < parts);
            assert_true(counter_partition(k, parts) < parts);
            /* deterministic: same input, same answer */
            assert_int_equal(map_partition("m", k, parts), map_partition("m", k, parts));
        }
    }
    assert_int_equal(map_partition("any", "thing", 1), 0);
}

/* 10k keys over 16 partitions: 625 expected each, binomial sd ~24; the bounds
 * (+-20%) are > 5 sd, so they fail only for a genuinely skewed hash. */
static void spread_over_16_partitions(void **)
{
    const int n = 10000;
    const uint32_t parts = 16;
    std::vector<int> maps(parts), counters(parts), sequential(parts);
    for (int i = 0; i < n; i++) {
        std::string k = "key-" + std::to_string(i);
        maps[map_partition("orders", k, parts)]++;
        counters[counter_partition(k, parts)]++;
        /* short keys differing in one low byte: where plain FNV is weakest */
        std::string raw(reinterpret_cast<const char *>(&i), sizeof i);
        sequential[map_partition("", raw, parts)]++;
    }
    for (const auto *counts : {&maps, &counters, &sequential}) {
        for (uint32_t p = 0; p < parts; p++) {
            int c = (*counts)[p];
            if (c < 500 || c > 750)
                fail_msg("partition %u got %d of %d keys (expected ~625)", p, c, n);
        }
    }
}

static void parts_are_length_delimited(void **)
{
    assert_true(hash_parts("ab", "c") != hash_parts("a", "bc"));
    assert_true(hash_parts("abc", "") != hash_parts("", "abc"));
    assert_true(hash_parts("a", "") != hash_parts("", "a"));
    assert_true(hash_parts(std::string("a\0", 2), "") != hash_parts("a", std::string("\0", 1)));
    assert_true(hash_parts("", "") != hash_parts(std::string("\0", 1), ""));

    /* every single byte hashes differently (no byte is ignored) */
    std::set<uint64_t> seen;
    for (int c = 0; c < 256; c++)
        seen.insert(hash_parts(std::string(1, static_cast<char>(c)), ""));
    seen.insert(hash_parts("", ""));
    assert_int_equal(seen.size(), 257);
}

/* A counter named X and map X live in unrelated partitions: counters must
 * not pile up on the partition of a same-named map. */
static void counter_and_map_routing_independent(void **)
{
    const uint32_t parts = 16;
    int same_as_empty_key = 0, same_as_name_key = 0;
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        std::string name = "prim-" + std::to_string(i);
        uint32_t c = counter_partition(name, parts);
        same_as_empty_key += c == map_partition(name, "", parts);
        same_as_name_key += c == map_partition(name, name, parts);
    }
    /* independent routing agrees 1 time in 16 (125 of 2000) */
    assert_in_range(same_as_empty_key, 60, 200);
    assert_in_range(same_as_name_key, 60, 200);
    /* and the counter route is a function of the name only */
    assert_int_equal(counter_partition("jobs", parts), counter_partition("jobs", parts));
    assert_true(counter_partition("jobs", 1u << 31) != counter_partition("jobz", 1u << 31));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_values_are_pinned),
        cmocka_unit_test(partitions_in_range),
        cmocka_unit_test(spread_over_16_partitions),
        cmocka_unit_test(parts_are_length_delimited),
        cmocka_unit_test(counter_and_map_routing_independent),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
