/*
 * raft_include.h — c-raft's headers for C++ (raft.h has no extern "C"
 * guard of its own).  Include this, never <raft.h> directly.
 */
#ifndef ATOMIX_RAFT_INCLUDE_H
#define ATOMIX_RAFT_INCLUDE_H

#include <uv.h>

extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#endif
