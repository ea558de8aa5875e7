/*
 * test_request_filter.cpp — src/core/request_filter.h: never "not there" for an
 * id that was added (that would apply a request twice), few false "maybe"s,
 * minutes forgotten only when wholly purged, and nothing known until the
 * caller says the table was read completely.
 */
#include <random>
#include <set>

#include "unit_helpers.h"
#include "request_filter.h"

using atomix::RequestFilter;

static const int64_t kMin = RequestFilter::kMinuteUs;

static uint64_t request_id(uint32_t node, uint32_t incarnation, uint32_t counter)
{
    return (uint64_t(node) << 48) | (uint64_t(incarnation & 0xffff) << 32) | counter;
}

static void unknown_until_complete(void **)
{
    RequestFilter f;
    assert_true(f.may_contain(1));
    f.add(5, 0);
    assert_true(f.may_contain(6)); /* not complete yet: everything may be there */
    f.mark_complete();
    assert_true(f.may_contain(5));
    f.reset();
    assert_false(f.complete());
    assert_true(f.may_contain(123456));
}

static void no_false_negatives_and_few_false_positives(void **)
{
    RequestFilter f;
    f.mark_complete();
    std::mt19937_64 rng(42);
    std::vector<uint64_t> added;
    /* ten minutes of log time, three origins, 20k requests a minute */
    uint32_t counter[4] = {0, 0, 0, 0};
    for (int minute = 0; minute < 10; minute++)
        for (int i = 0; i < 20000; i++) {
            uint32_t node = 1 + rng() % 3;
            uint64_t id = request_id(node, 0xbeef + node, ++counter[node]);
            f.add(id, 1700000000LL * 1000000 + minute * kMin + (int64_t)(rng() % kMin));
            added.push_back(id);
        }
    for (uint64_t id : added)
        if (!f.may_contain(id))
            fail_msg("added id %llx answered 'not there'", (unsigned long long)id);
    /* ids never added: new requests of the same origins */
    size_t maybe = 0, probes = 50000;
    for (size_t i = 0; i < probes; i++) {
        uint32_t node = 1 + i % 3;
        if (f.may_contain(request_id(node, 0xbeef + node, counter[node] + 1 + (uint32_t)i)))
            maybe++;
    }
    /* 11 minutes' filters are probed, each ~0.15% */
    print_message("false maybe: %zu of %zu (%.2f%%), %zu minutes, %zu bytes\n", maybe, probes,
                  100.0 * maybe / probes, f.minutes(), f.bytes());
    assert_true(maybe < probes / 25);
}

static void purge_forgets_whole_minutes_only(void **)
{
    RequestFilter f;
    f.mark_complete();
    int64_t base = 1700000040LL * 1000000; /* a minute boundary */
    base -= base % kMin;
    f.add(1, base + 10);           /* minute 0 */
    f.add(2, base + kMin + 5);     /* minute 1 */
    f.add(3, base + 2 * kMin + 7); /* minute 2 */
    /* the table dropped records older than the middle of minute 1: minute
     * 0 is gone, minute 1 may still hold rows */
    f.forget_before(base + kMin + kMin / 2);
    assert_int_equal(f.minutes(), 2);
    assert_true(f.may_contain(2));
    assert_true(f.may_contain(3));
    f.forget_before(base + 3 * kMin);
    assert_int_equal(f.minutes(), 0);
    assert_false(f.may_contain(2));
    assert_false(f.may_contain(3));
}

static void negative_and_pre_epoch_times(void **)
{
    RequestFilter f;
    f.mark_complete();
    f.add(7, -1);
    f.add(8, -kMin - 1);
    assert_true(f.may_contain(7));
    assert_true(f.may_contain(8));
    f.forget_before(-kMin);
    assert_true(f.may_contain(7));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_until_complete),
        cmocka_unit_test(no_false_negatives_and_few_false_positives),
        cmocka_unit_test(purge_forgets_whole_minutes_only),
        cmocka_unit_test(negative_and_pre_epoch_times),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
