/*
 * planted_bugs.h — deliberately reintroduced bugs, for proving that the
 * fault suites catch them (test/chaos, the TAP fault tests).
 *
 * Off in every normal build.  `make PLANT=<name>` builds an atomix with one
 * of them compiled in; never install such a build anywhere but a test box.
 *   poisoned_entry   copies of a request are deduplicated only when they
 *                    carry the retry flag and sit in different entries; a
 *                    forward is resent after 3 s on the connection it is
 *                    still waiting on; the leader keeps copies it holds
 *                    (the one-way-partition outage of atomix 0.1)
 *   no_request_log   recorded outcomes and floors are never consulted (only
 *                    copies inside one entry are caught): retries re-apply
 *   unconfirmed_read a leader takes its commit index as a read index without
 *                    confirming it still leads (a deposed leader answers
 *                    reads from its stale replica)
 *   stale_grant      grants are answered even when the node no longer
 *                    vouches for the session (no grant gate, no backend check)
 *   endless_lease    a leader's read lease, once it had one, never expires
 *                    (a deposed leader serves reads from its stale replica)
 */
#ifndef ATOMIX_PLANTED_BUGS_H
#define ATOMIX_PLANTED_BUGS_H

namespace atomix {

#ifdef ATOMIX_PLANT_POISONED_ENTRY
constexpr bool kPlantPoisonedEntry = true;
#else
constexpr bool kPlantPoisonedEntry = false;
#endif

#ifdef ATOMIX_PLANT_NO_REQUEST_LOG
constexpr bool kPlantNoRequestLog = true;
#else
constexpr bool kPlantNoRequestLog = false;
#endif

#ifdef ATOMIX_PLANT_UNCONFIRMED_READ
constexpr bool kPlantUnconfirmedRead = true;
#else
constexpr bool kPlantUnconfirmedRead = false;
#endif

#ifdef ATOMIX_PLANT_STALE_GRANT
constexpr bool kPlantStaleGrant = true;
#else
constexpr bool kPlantStaleGrant = false;
#endif

#ifdef ATOMIX_PLANT_ENDLESS_LEASE
constexpr bool kPlantEndlessLease = true;
#else
constexpr bool kPlantEndlessLease = false;
#endif

} // namespace atomix

#endif
