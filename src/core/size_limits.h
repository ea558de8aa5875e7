/*
 * size_limits.h — documented size limits of atomix names, keys and values.
 *
 * Names and keys are part of a btree key in the partition tables, so they
 * stay well under the ~2.7 kB btree tuple limit.  The value limit is the
 * GUC atomix.max_value_size (see guc.h).
 */
#ifndef ATOMIX_SIZE_LIMITS_H
#define ATOMIX_SIZE_LIMITS_H

#define ATOMIX_MAX_NAME_BYTES 255
#define ATOMIX_MAX_KEY_BYTES 1024

#endif
