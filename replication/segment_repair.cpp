/*
 * segment_repair.cpp — see segment_repair.h.
 *
 * The open segment layout of raft_uv 0.15 (disk format 1), little endian:
 *   u64 format (1; 0 for a preallocated segment never written)
 *   batches, each: u32 crc of header, u32 crc of data, u64 n (> 0),
 *                  n × (u64 term, u8 type, 3 bytes unused, u32 size),
 *                  the n payloads, each padded to 8 bytes
 *   zeros up to the preallocated size
 */
#include "segment_repair.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace atomix {

static constexpr size_t kFormatBytes = 8;
static constexpr size_t kPreambleBytes = 16; /* two checksums and the entry count */
static constexpr size_t kEntryHeaderBytes = 16;
static constexpr uint64_t kFormatVersion = 1;

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

size_t open_segment_trim_point(const unsigned char *data, size_t len)
{
    if (len < kFormatBytes || le64(data) != kFormatVersion)
        return len; /* never written, or not a format we know: raft_uv decides */
    size_t off = kFormatBytes;
    while (len - off >= kPreambleBytes) {
        uint64_t n = le64(data + off + 8);
        if (n == 0)
            return len; /* the zeros after the last batch can hold a preamble: raft_uv copes */
        if (n > (len - off - kPreambleBytes) / kEntryHeaderBytes)
            return len; /* a torn or foreign batch: not ours to judge */
        size_t headers_end = off + kPreambleBytes + (size_t)n * kEntryHeaderBytes;
        size_t payload = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint32_t size = le32(data + off + kPreambleBytes + i * kEntryHeaderBytes + 12);
            payload += ((size_t)size + 7) / 8 * 8;
            if (payload > len - headers_end)
                return len; /* torn: leave it to raft_uv */
        }
        off = headers_end + payload;
    }
    if (off == len)
        return len; /* the last batch ends at the end of the file */
    for (size_t i = off; i < len; i++)
        if (data[i] != 0)
            return len;
    return off; /* fewer than 16 zero bytes after the last batch: raft_uv 0.15 aborts on them */
}

static bool is_open_segment(const char *name)
{
    if (strncmp(name, "open-", 5) != 0 || name[5] == '\0')
        return false;
    for (const char *c = name + 5; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    return true;
}

static std::string read_file(const std::string &path)
{
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0)
        throw std::runtime_error("could not open \"" + path + "\": " + strerror(errno));
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0) {
            int err = errno;
            close(fd);
            throw std::runtime_error("could not read \"" + path + "\": " + strerror(err));
        }
        if (got == 0)
            break;
        out.append(buf, (size_t)got);
    }
    close(fd);
    return out;
}

std::vector<std::string> trim_full_open_segments(const std::string &dir)
{
    std::vector<std::string> trimmed;
    DIR *d = opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT)
            return trimmed;
        throw std::runtime_error("could not open directory \"" + dir + "\": " + strerror(errno));
    }
    std::vector<std::string> names;
    while (struct dirent *e = readdir(d))
        if (is_open_segment(e->d_name))
            names.push_back(e->d_name);
    closedir(d);
    for (const std::string &name : names) {
        std::string path = dir + "/" + name;
        std::string content = read_file(path);
        size_t cut = open_segment_trim_point(reinterpret_cast<const unsigned char *>(content.data()),
                                             content.size());
        if (cut == content.size())
            continue;
        int fd = open(path.c_str(), O_WRONLY);
        if (fd < 0 || ftruncate(fd, (off_t)cut) != 0 || fsync(fd) != 0) {
            int err = errno;
            if (fd >= 0)
                close(fd);
            throw std::runtime_error("could not trim \"" + path + "\": " + strerror(err));
        }
        close(fd);
        trimmed.push_back(name);
    }
    return trimmed;
}

} // namespace atomix
