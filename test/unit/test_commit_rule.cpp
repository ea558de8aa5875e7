/*
 * test_commit_rule.cpp — c-raft 0.15's commit rule starves under steady
 * load, and Raft's own rule (replication/commit_rule.h) does not.
 *
 * A raft_fixture cluster of three voters with one follower down: the
 * leader and the one live follower must both store an entry before it
 * commits.  The leader proposes a new entry every few milliseconds of
 * simulated time, faster than a round trip, so c-raft's rule — a majority
 * must hold the leader's *last stored* index — keeps missing.  Without our
 * rule the commit index stops moving for the whole load; with it (applied
 * after every step, as RaftGroup::poll does after every loop turn) commits
 * follow the follower's acknowledgements.  Also: the rule never commits an
 * entry of an earlier term, and never beyond what the leader stored.
 */
#include "unit_helpers.h"

#include <cstring>

extern "C" {
#include <raft.h>
#include <raft/fixture.h>
}

#include "commit_rule.h"

using namespace atomix;

namespace {

int fsm_apply(struct raft_fsm *, const struct raft_buffer *, void **result)
{
    *result = nullptr;
    return 0;
}

struct Proposal {
    struct raft_apply req;
};

void proposal_done(struct raft_apply *req, int, void *) { delete static_cast<Proposal *>(req->data); }

void propose(struct raft *r)
{
    struct raft_buffer buf;
    buf.len = 8;
    buf.base = raft_malloc(buf.len);
    memset(buf.base, 0, buf.len);
    auto *p = new Proposal();
    p->req.data = p;
    if (raft_apply(r, &p->req, &buf, 1, proposal_done) != 0) {
        raft_free(buf.base);
        delete p;
    }
}

struct Run {
    uint64_t commit_before = 0, commit_after = 0;
    uint64_t stored_after = 0;
    unsigned unstuck = 0;
    bool bad_commit = false; /* committed before the term's first entry */
};

/* Loads the leader of a 3-voter fixture with one follower dead for
 * `steps` steps, proposing every `every` ms of fixture time. */
Run run(bool with_rule, unsigned steps, unsigned every)
{
    struct raft_fixture f;
    struct raft_fsm fsms[3];
    memset(fsms, 0, sizeof(fsms));
    assert_int_equal(raft_fixture_initialize(&f), 0);
    for (unsigned i = 0; i < 3; i++) {
        fsms[i].version = 1;
        fsms[i].apply = fsm_apply;
        assert_int_equal(raft_fixture_grow(&f, &fsms[i]), 0);
        raft_fixture_set_network_latency(&f, i, 10);
        raft_fixture_set_disk_latency(&f, i, 3);
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&f, 3, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&f), 0);
    raft_fixture_elect(&f, 0);
    struct raft *leader = raft_fixture_get(&f, 0);
    raft_fixture_kill(&f, 2);

    /* everything from here on is of this term */
    uint64_t term_start = raft_last_index(leader) + 1;
    propose(leader);
    raft_fixture_step_until_applied(&f, 0, term_start, 2000);

    Run out;
    out.commit_before = leader->commit_index;
    raft_time next = f.time;
    for (unsigned s = 0; s < steps; s++) {
        if (f.time >= next) {
            propose(leader);
            next = f.time + every;
        }
        raft_fixture_step(&f);
        if (raft_state(leader) != RAFT_LEADER)
            break;
        if (with_rule) {
            uint64_t c = quorum_commit_index(leader, leader->id, term_start);
            if (c) {
                if (c < term_start)
                    out.bad_commit = true;
                leader->commit_index = c;
                out.unstuck++;
            }
        }
    }
    out.commit_after = leader->commit_index;
    out.stored_after = leader->last_stored;
    raft_fixture_close(&f);
    return out;
}

} // namespace

static void c_raft_rule_starves_under_load(void **)
{
    Run r = run(false, 4000, 2);
    if (std::getenv("FIXTURE_DEBUG"))
        fprintf(stderr, "without the rule: commit %llu -> %llu, stored %llu\n",
                (unsigned long long)r.commit_before, (unsigned long long)r.commit_after,
                (unsigned long long)r.stored_after);
    /* the leader stored hundreds of entries; almost none committed */
    assert_true(r.stored_after > r.commit_before + 100);
    assert_true(r.commit_after - r.commit_before < (r.stored_after - r.commit_before) / 10);
}

static void raft_rule_keeps_committing(void **)
{
    Run r = run(true, 4000, 2);
    if (std::getenv("FIXTURE_DEBUG"))
        fprintf(stderr, "with the rule: commit %llu -> %llu, stored %llu, unstuck %u\n",
                (unsigned long long)r.commit_before, (unsigned long long)r.commit_after,
                (unsigned long long)r.stored_after, r.unstuck);
    assert_false(r.bad_commit);
    assert_true(r.unstuck > 0);
    /* commits trail what is stored by about one round trip of entries */
    assert_true(r.stored_after > r.commit_before + 100);
    assert_true(r.commit_after + 40 >= r.stored_after);
    assert_true(r.commit_after <= r.stored_after);
}

/* The rule commits nothing of an earlier term, and nothing a majority has
 * not stored. */
static void rule_respects_term_and_majority(void **)
{
    struct raft r;
    memset(&r, 0, sizeof(r));
    struct raft_server servers[3] = {{1, nullptr, RAFT_VOTER}, {2, nullptr, RAFT_VOTER},
                                     {3, nullptr, RAFT_STANDBY}};
    struct raft_progress progress[3];
    memset(progress, 0, sizeof(progress));
    r.state = RAFT_LEADER;
    r.configuration.servers = servers;
    r.configuration.n = 3;
    r.leader_state.progress = progress;
    r.last_stored = 50;
    r.commit_index = 10;
    progress[1].match_index = 40;
    progress[2].match_index = 50; /* a standby does not count */
    assert_int_equal(quorum_commit_index(&r, 1, 20), 40);
    assert_int_equal(quorum_commit_index(&r, 1, 41), 0); /* 40 is of an earlier term */
    progress[1].match_index = 5;
    assert_int_equal(quorum_commit_index(&r, 1, 1), 0); /* below the commit index already */
    progress[1].match_index = 60; /* never past what the leader stored */
    assert_int_equal(quorum_commit_index(&r, 1, 1), 50);
    r.state = RAFT_FOLLOWER;
    assert_int_equal(quorum_commit_index(&r, 1, 1), 0);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(c_raft_rule_starves_under_load),
        cmocka_unit_test(raft_rule_keeps_committing),
        cmocka_unit_test(rule_respects_term_and_majority),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
