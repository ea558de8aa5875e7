/*
 * test_cluster_config.cpp — parsing atomix.initial_cluster and placing
 * partitions (src/core/cluster_config.h).
 *
 * Every node parses the same initial_cluster and must compute the same
 * placement, so both the parser (what it accepts, what it refuses, and that
 * it refuses with ClusterConfigError) and the placement arithmetic (voters
 * distinct, replication factor capped, leadership spread evenly) are pinned
 * here.
 */
#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "cluster_config.h"

using namespace atomix;

namespace {

/* The message of the ClusterConfigError that parse() throws, or fails the
 * test when it throws nothing or something else. */
std::string parse_error(const std::string &initial, uint32_t self_id, const std::string &self_addr,
                        uint32_t rf)
{
    try {
        ClusterConfig::parse(initial, self_id, self_addr, rf);
    } catch (const ClusterConfigError &e) {
        return e.what();
    } catch (const std::exception &e) {
        fail_msg("parse(\"%s\", %u, \"%s\", %u) threw a non-ClusterConfigError: %s",
                 initial.c_str(), self_id, self_addr.c_str(), rf, e.what());
    }
    fail_msg("parse(\"%s\", %u, \"%s\", %u) accepted bad input", initial.c_str(), self_id,
             self_addr.c_str(), rf);
    return "";
}

std::string address_error(const std::string &text)
{
    try {
        parse_address(text);
    } catch (const ClusterConfigError &e) {
        return e.what();
    } catch (const std::exception &e) {
        fail_msg("parse_address(\"%s\") threw a non-ClusterConfigError: %s", text.c_str(),
                 e.what());
    }
    fail_msg("parse_address(\"%s\") accepted bad input", text.c_str());
    return "";
}

bool contains(const std::string &haystack, const std::string &needle)
{
    return haystack.find(needle) != std::string::npos;
}

/* "1=127.0.0.1:7401,2=127.0.0.1:7402,..." for ids 1..n */
std::string cluster_of(uint32_t n)
{
    std::string s;
    for (uint32_t i = 1; i <= n; i++) {
        if (i > 1)
            s += ",";
        s += std::to_string(i) + "=127.0.0.1:" + std::to_string(7400 + i);
    }
    return s;
}

} // namespace

/* ---- parse_address ---- */

static void address_parsing(void **)
{
    NodeAddress a = parse_address("10.1.2.3:5432");
    assert_string_equal(a.host.c_str(), "10.1.2.3");
    assert_int_equal(a.port, 5432);
    assert_string_equal(a.address().c_str(), "10.1.2.3:5432");

    a = parse_address("  localhost:7401\t");
    assert_string_equal(a.host.c_str(), "127.0.0.1");
    assert_int_equal(a.port, 7401);

    assert_int_equal(parse_address("127.0.0.1:1").port, 1);
    assert_int_equal(parse_address("127.0.0.1:65535").port, 65535);
}

static void address_errors(void **)
{
    /* not host:port */
    assert_true(contains(address_error(""), "host:port"));
    assert_true(contains(address_error("127.0.0.1"), "host:port"));
    assert_true(contains(address_error(":7401"), "host:port"));
    assert_true(contains(address_error("127.0.0.1:"), "host:port"));
    /* hosts that are not IPv4 dotted quads */
    assert_true(contains(address_error("example.com:7401"), "IPv4"));
    assert_true(contains(address_error("::1:7401"), "IPv4"));
    assert_true(contains(address_error("[::1]:7401"), "IPv4"));
    assert_true(contains(address_error("256.0.0.1:7401"), "IPv4"));
    assert_true(contains(address_error("127.1:7401"), "IPv4"));
    assert_true(contains(address_error("127.0.0.1 :7401"), "IPv4"));
    assert_true(contains(address_error("LOCALHOST:7401"), "IPv4"));
    /* ports */
    assert_true(contains(address_error("127.0.0.1:0"), "port"));
    assert_true(contains(address_error("127.0.0.1:65536"), "port"));
    assert_true(contains(address_error("127.0.0.1:99999"), "port"));
    assert_true(contains(address_error("127.0.0.1:123456"), "port"));
    assert_true(contains(address_error("127.0.0.1:99999999999999999999999"), "port"));
    assert_true(contains(address_error("127.0.0.1:-1"), "port"));
    assert_true(contains(address_error("127.0.0.1:+80"), "port"));
    assert_true(contains(address_error("127.0.0.1:80a"), "port"));
    assert_true(contains(address_error("127.0.0.1:0x50"), "port"));
    assert_true(contains(address_error("127.0.0.1: 80"), "port"));
}

/* ---- ClusterConfig::parse ---- */

static void one_node_default(void **)
{
    for (const char *empty : {"", "   ", " \t "}) {
        ClusterConfig c = ClusterConfig::parse(empty, 7, "localhost:7401", 3);
        assert_int_equal(c.nodes().size(), 1);
        assert_int_equal(c.self().id, 7);
        assert_string_equal(c.self().host.c_str(), "127.0.0.1");
        assert_int_equal(c.self().port, 7401);
        assert_non_null(c.node(7));
        assert_null(c.node(1));
        /* replication factor capped at one node */
        assert_int_equal(c.voters_per_partition(), 1);
        for (uint32_t p = 0; p < 16; p++) {
            std::vector<uint32_t> v = c.voters(p);
            assert_int_equal(v.size(), 1);
            assert_int_equal(v[0], 7);
            assert_int_equal(c.preferred_leader(p), 7);
            assert_true(c.is_voter(p, 7));
            assert_false(c.is_voter(p, 1));
        }
    }
    /* the one-node default still validates its address and the factor */
    assert_true(contains(parse_error("", 1, "nohost", 1), "host:port"));
    assert_true(contains(parse_error("", 1, "127.0.0.1:0", 1), "port"));
    assert_true(contains(parse_error("", 1, "127.0.0.1:7401", 0), "replication_factor"));
}

static void parse_three_nodes_with_spaces(void **)
{
    ClusterConfig c = ClusterConfig::parse(
        "  3 = 10.0.0.3:7403 ,\t1=localhost:7401,  2 =127.0.0.1:7402  ", 2, " 127.0.0.1:7402 ", 3);
    assert_int_equal(c.nodes().size(), 3);
    /* sorted by id */
    assert_int_equal(c.nodes()[0].id, 1);
    assert_int_equal(c.nodes()[1].id, 2);
    assert_int_equal(c.nodes()[2].id, 3);
    assert_string_equal(c.nodes()[0].address().c_str(), "127.0.0.1:7401"); /* localhost */
    assert_string_equal(c.nodes()[1].address().c_str(), "127.0.0.1:7402");
    assert_string_equal(c.nodes()[2].address().c_str(), "10.0.0.3:7403");
    assert_int_equal(c.self().id, 2);
    assert_int_equal(c.voters_per_partition(), 3);
    assert_non_null(c.node(3));
    assert_string_equal(c.node(3)->host.c_str(), "10.0.0.3");
    assert_null(c.node(4));
    assert_null(c.node(0));

    /* empty items (stray commas) are skipped */
    ClusterConfig d = ClusterConfig::parse(",1=127.0.0.1:7401,,2=127.0.0.1:7402,", 1,
                                           "127.0.0.1:7401", 1);
    assert_int_equal(d.nodes().size(), 2);
    assert_int_equal(d.voters_per_partition(), 1);

    /* listen_address given as localhost matches 127.0.0.1 in the list */
    ClusterConfig e =
        ClusterConfig::parse("1=127.0.0.1:7401,2=127.0.0.1:7402", 1, "localhost:7401", 2);
    assert_int_equal(e.self().id, 1);

    /* the largest id */
    ClusterConfig f = ClusterConfig::parse("65535=127.0.0.1:7401", 65535, "127.0.0.1:7401", 1);
    assert_int_equal(f.self().id, 65535);
}

static void every_node_computes_the_same_placement(void **)
{
    /* the same list, in any order, seen from every node */
    const std::string orders[] = {
        "1=127.0.0.1:7401,2=127.0.0.1:7402,3=127.0.0.1:7403,4=127.0.0.1:7404",
        "4=127.0.0.1:7404,3=127.0.0.1:7403,2=127.0.0.1:7402,1=127.0.0.1:7401",
        "2=127.0.0.1:7402,4=127.0.0.1:7404,1=127.0.0.1:7401,3=127.0.0.1:7403",
    };
    ClusterConfig ref = ClusterConfig::parse(orders[0], 1, "127.0.0.1:7401", 3);
    for (const std::string &o : orders)
        for (uint32_t self = 1; self <= 4; self++) {
            ClusterConfig c =
                ClusterConfig::parse(o, self, "127.0.0.1:" + std::to_string(7400 + self), 3);
            assert_int_equal(c.self().id, self);
            for (uint32_t p = 0; p < 64; p++)
                assert_true(c.voters(p) == ref.voters(p));
        }
}

static void parse_errors(void **)
{
    const std::string ok2 = "1=127.0.0.1:7401,2=127.0.0.1:7402";

    /* items that are not id=host:port */
    assert_true(contains(parse_error("127.0.0.1:7401", 1, "127.0.0.1:7401", 1), "id=host:port"));
    assert_true(contains(parse_error("1=127.0.0.1:7401,2", 1, "127.0.0.1:7401", 1),
                         "id=host:port"));
    assert_true(contains(parse_error("1=", 1, "127.0.0.1:7401", 1), "host:port"));

    /* bad ids */
    for (const char *bad : {"0", "65536", "99999", "123456", "-1", "+1", "a", "1a", "0x1", "1.0",
                            "", "1 2", "99999999999999999999"}) {
        std::string item = std::string(bad) + "=127.0.0.1:7401";
        std::string err = parse_error(item, 1, "127.0.0.1:7401", 1);
        if (!contains(err, "node id"))
            fail_msg("id \"%s\": unexpected error \"%s\"", bad, err.c_str());
    }

    /* duplicate ids and addresses */
    assert_true(contains(
        parse_error("1=127.0.0.1:7401,1=127.0.0.1:7402", 1, "127.0.0.1:7401", 1), "twice"));
    assert_true(contains(
        parse_error("1=127.0.0.1:7401, 01=127.0.0.1:7402", 1, "127.0.0.1:7401", 1), "twice"));
    assert_true(contains(
        parse_error("1=127.0.0.1:7401,2=127.0.0.1:7401", 1, "127.0.0.1:7401", 1), "twice"));
    /* localhost and 127.0.0.1 are the same address */
    assert_true(contains(
        parse_error("1=127.0.0.1:7401,2=localhost:7401", 1, "127.0.0.1:7401", 1), "twice"));
    /* same host, different ports, and same port, different hosts, are fine */
    ClusterConfig::parse("1=127.0.0.1:7401,2=127.0.0.2:7401", 1, "127.0.0.1:7401", 1);

    /* hosts that are not IPv4 */
    assert_true(contains(parse_error("1=node1:7401,2=127.0.0.1:7402", 2, "127.0.0.1:7402", 1),
                         "IPv4"));
    assert_true(contains(parse_error("1=[::1]:7401", 1, "[::1]:7401", 1), "IPv4"));
    assert_true(contains(parse_error("1=::1:7401", 1, "::1:7401", 1), "IPv4"));

    /* bad ports */
    assert_true(contains(parse_error("1=127.0.0.1:0", 1, "127.0.0.1:0", 1), "port"));
    assert_true(contains(parse_error("1=127.0.0.1:65536", 1, "127.0.0.1:7401", 1), "port"));
    assert_true(contains(parse_error("1=127.0.0.1:http", 1, "127.0.0.1:7401", 1), "port"));

    /* self id missing */
    std::string err = parse_error(ok2, 3, "127.0.0.1:7403", 1);
    assert_true(contains(err, "node_id 3"));
    assert_true(contains(err, "initial_cluster"));
    assert_true(contains(parse_error(ok2, 0, "127.0.0.1:7401", 1), "node_id 0"));

    /* listen_address differs from self's entry */
    err = parse_error(ok2, 1, "127.0.0.1:7402", 1);
    assert_true(contains(err, "listen_address"));
    assert_true(contains(err, "127.0.0.1:7401"));
    assert_true(contains(parse_error(ok2, 1, "127.0.0.2:7401", 1), "listen_address"));
    /* a malformed listen_address is an error too */
    assert_true(contains(parse_error(ok2, 1, "", 1), "host:port"));

    /* replication factor 0 */
    assert_true(contains(parse_error(ok2, 1, "127.0.0.1:7401", 0), "replication_factor"));
}

/* ---- placement ---- */

static void replication_factor_capped(void **)
{
    for (uint32_t n = 1; n <= 7; n++)
        for (uint32_t rf = 1; rf <= 9; rf++) {
            ClusterConfig c = ClusterConfig::parse(cluster_of(n), 1, "127.0.0.1:7401", rf);
            assert_int_equal(c.voters_per_partition(), std::min(rf, n));
        }
    /* the largest factor the GUC allows */
    ClusterConfig c = ClusterConfig::parse(cluster_of(3), 1, "127.0.0.1:7401", 15);
    assert_int_equal(c.voters_per_partition(), 3);
    ClusterConfig d = ClusterConfig::parse(cluster_of(3), 1, "127.0.0.1:7401", UINT32_MAX);
    assert_int_equal(d.voters_per_partition(), 3);
}

static void voters_distinct_and_sized(void **)
{
    for (uint32_t n = 1; n <= 7; n++)
        for (uint32_t rf = 1; rf <= 8; rf++) {
            /* non-contiguous ids, to catch index/id mix-ups */
            std::string list;
            std::set<uint32_t> ids;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t id = 10 * (n - i) + 3; /* listed in descending order */
                ids.insert(id);
                list += (i ? "," : "") + std::to_string(id) + "=127.0.0.1:" +
                        std::to_string(7000 + id);
            }
            uint32_t self = *ids.begin();
            ClusterConfig c =
                ClusterConfig::parse(list, self, "127.0.0.1:" + std::to_string(7000 + self), rf);
            size_t expected = std::min(rf, n);
            for (uint32_t p = 0; p < 256; p++) {
                std::vector<uint32_t> v = c.voters(p);
                assert_int_equal(v.size(), expected);
                std::set<uint32_t> distinct(v.begin(), v.end());
                assert_int_equal(distinct.size(), expected);
                for (uint32_t id : v)
                    assert_true(ids.count(id) == 1);
                assert_int_equal(c.preferred_leader(p), v.front());
                size_t voters_seen = 0;
                for (uint32_t id : ids) {
                    bool in_v = std::find(v.begin(), v.end(), id) != v.end();
                    assert_int_equal(c.is_voter(p, id), in_v);
                    voters_seen += in_v;
                }
                assert_int_equal(voters_seen, expected);
                /* ids that are not nodes are never voters */
                assert_false(c.is_voter(p, 0));
                assert_false(c.is_voter(p, 1));
                assert_false(c.is_voter(p, 99999));
            }
        }
}

static void preferred_leaders_spread_evenly(void **)
{
    const uint32_t P = 16;
    for (uint32_t n = 1; n <= 7; n++) {
        ClusterConfig c = ClusterConfig::parse(cluster_of(n), 1, "127.0.0.1:7401", 3);
        std::map<uint32_t, uint32_t> leads, votes;
        for (uint32_t p = 0; p < P; p++) {
            leads[c.preferred_leader(p)]++;
            for (uint32_t id : c.voters(p))
                votes[id]++;
        }
        uint32_t lo = P / n, hi = (P + n - 1) / n;
        for (uint32_t id = 1; id <= n; id++) {
            /* every node leads floor(P/N) or ceil(P/N) partitions */
            if (leads[id] < lo || leads[id] > hi)
                fail_msg("N=%u: node %u is preferred leader of %u of %u partitions", n, id,
                         leads[id], P);
            /* and every node votes in about rf/N of them */
            uint32_t rf = std::min(3u, n);
            uint32_t vlo = P * rf / n, vhi = (P * rf + n - 1) / n;
            if (votes[id] + 1 < vlo || votes[id] > vhi + 1)
                fail_msg("N=%u: node %u votes in %u of %u partitions", n, id, votes[id], P);
        }
        assert_int_equal(leads.size(), std::min(n, P));
    }
}

/* Placement is pinned: changing it would move every partition's voters on
 * an upgrade. */
static void placement_pinned(void **)
{
    ClusterConfig c = ClusterConfig::parse(cluster_of(5), 4, "127.0.0.1:7404", 3);
    assert_true(c.voters(0) == (std::vector<uint32_t>{1, 2, 3}));
    assert_true(c.voters(3) == (std::vector<uint32_t>{4, 5, 1}));
    assert_true(c.voters(4) == (std::vector<uint32_t>{5, 1, 2}));
    assert_true(c.voters(5) == (std::vector<uint32_t>{1, 2, 3}));
    assert_true(c.voters(12) == (std::vector<uint32_t>{3, 4, 5}));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(address_parsing),
        cmocka_unit_test(address_errors),
        cmocka_unit_test(one_node_default),
        cmocka_unit_test(parse_three_nodes_with_spaces),
        cmocka_unit_test(every_node_computes_the_same_placement),
        cmocka_unit_test(parse_errors),
        cmocka_unit_test(replication_factor_capped),
        cmocka_unit_test(voters_distinct_and_sized),
        cmocka_unit_test(preferred_leaders_spread_evenly),
        cmocka_unit_test(placement_pinned),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
