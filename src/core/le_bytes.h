/*
 * le_bytes.h — little-endian fixed-width integers in byte strings, for the
 * hand-built frames of the node transport and request forwarding.
 */
#ifndef ATOMIX_LE_BYTES_H
#define ATOMIX_LE_BYTES_H

#include <cstdint>
#include <string>

namespace atomix {

inline void put_le32(std::string &s, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void put_le64(std::string &s, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline uint32_t get_le32(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
    return v;
}

inline uint64_t get_le64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
    return v;
}

} // namespace atomix

#endif
