// json.h — a small JSON value, parser and string escaper for the chaos
// suite's history files (one JSON object per line).  Only what the history
// needs: null, bool, 64-bit integers, doubles, strings, arrays, objects.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace chaos {

struct Json {
    enum Kind { Null, Bool, Int, Double, String, Array, Object };
    Kind kind = Null;
    bool b = false;
    int64_t i = 0;
    double d = 0;
    std::string s;
    std::vector<Json> arr;
    std::map<std::string, Json> obj;

    bool is_null() const { return kind == Null; }
    bool has(const std::string &k) const { return kind == Object && obj.count(k) != 0; }
    const Json &operator[](const std::string &k) const
    {
        static const Json null_value;
        if (kind != Object)
            return null_value;
        auto it = obj.find(k);
        return it == obj.end() ? null_value : it->second;
    }
    int64_t as_int(int64_t dflt = 0) const
    {
        if (kind == Int)
            return i;
        if (kind == Double)
            return (int64_t)d;
        if (kind == Bool)
            return b ? 1 : 0;
        if (kind == String && !s.empty()) {
            char *end = nullptr;
            long long v = strtoll(s.c_str(), &end, 10);
            if (end && *end == '\0')
                return v;
        }
        return dflt;
    }
    double as_double(double dflt = 0) const
    {
        if (kind == Double)
            return d;
        if (kind == Int)
            return (double)i;
        return dflt;
    }
    std::string as_str(const std::string &dflt = "") const
    {
        if (kind == String)
            return s;
        if (kind == Int)
            return std::to_string(i);
        if (kind == Bool)
            return b ? "true" : "false";
        return dflt;
    }
    bool as_bool(bool dflt = false) const
    {
        if (kind == Bool)
            return b;
        if (kind == Int)
            return i != 0;
        if (kind == String)
            return s == "t" || s == "true";
        return dflt;
    }
};

class JsonParser {
public:
    explicit JsonParser(const std::string &text) : p_(text.c_str()), end_(text.c_str() + text.size()) {}

    Json parse()
    {
        Json v = value();
        ws();
        if (p_ != end_)
            fail("trailing characters");
        return v;
    }

private:
    const char *p_;
    const char *end_;

    [[noreturn]] void fail(const char *what) { throw std::runtime_error(std::string("bad JSON: ") + what); }
    void ws()
    {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
            ++p_;
    }
    bool lit(const char *w)
    {
        size_t n = strlen(w);
        if ((size_t)(end_ - p_) >= n && std::string(p_, n) == w) {
            p_ += n;
            return true;
        }
        return false;
    }
    static void utf8(std::string &out, unsigned cp)
    {
        if (cp < 0x80)
            out += (char)cp;
        else if (cp < 0x800) {
            out += (char)(0xC0 | (cp >> 6));
            out += (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += (char)(0xE0 | (cp >> 12));
            out += (char)(0x80 | ((cp >> 6) & 0x3F));
            out += (char)(0x80 | (cp & 0x3F));
        } else {
            out += (char)(0xF0 | (cp >> 18));
            out += (char)(0x80 | ((cp >> 12) & 0x3F));
            out += (char)(0x80 | ((cp >> 6) & 0x3F));
            out += (char)(0x80 | (cp & 0x3F));
        }
    }
    unsigned hex4()
    {
        if (end_ - p_ < 4)
            fail("short \\u escape");
        unsigned v = 0;
        for (int k = 0; k < 4; k++) {
            char c = *p_++;
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= (unsigned)(c - 'A' + 10);
            else
                fail("bad \\u escape");
        }
        return v;
    }
    std::string str()
    {
        if (p_ >= end_ || *p_ != '"')
            fail("expected string");
        ++p_;
        std::string out;
        while (true) {
            if (p_ >= end_)
                fail("unterminated string");
            char c = *p_++;
            if (c == '"')
                break;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (p_ >= end_)
                fail("unterminated escape");
            char e = *p_++;
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                unsigned cp = hex4();
                if (cp >= 0xD800 && cp < 0xDC00 && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
                    p_ += 2;
                    unsigned lo = hex4();
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                utf8(out, cp);
                break;
            }
            default: fail("bad escape");
            }
        }
        return out;
    }
    Json value()
    {
        ws();
        if (p_ >= end_)
            fail("unexpected end");
        Json v;
        char c = *p_;
        if (c == '{') {
            ++p_;
            v.kind = Json::Object;
            ws();
            if (p_ < end_ && *p_ == '}') {
                ++p_;
                return v;
            }
            while (true) {
                ws();
                std::string k = str();
                ws();
                if (p_ >= end_ || *p_ != ':')
                    fail("expected ':'");
                ++p_;
                v.obj[k] = value();
                ws();
                if (p_ < end_ && *p_ == ',') {
                    ++p_;
                    continue;
                }
                if (p_ < end_ && *p_ == '}') {
                    ++p_;
                    return v;
                }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            ++p_;
            v.kind = Json::Array;
            ws();
            if (p_ < end_ && *p_ == ']') {
                ++p_;
                return v;
            }
            while (true) {
                v.arr.push_back(value());
                ws();
                if (p_ < end_ && *p_ == ',') {
                    ++p_;
                    continue;
                }
                if (p_ < end_ && *p_ == ']') {
                    ++p_;
                    return v;
                }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') {
            v.kind = Json::String;
            v.s = str();
            return v;
        }
        if (lit("null"))
            return v;
        if (lit("true")) {
            v.kind = Json::Bool;
            v.b = true;
            return v;
        }
        if (lit("false")) {
            v.kind = Json::Bool;
            return v;
        }
        const char *start = p_;
        bool is_double = false;
        if (p_ < end_ && (*p_ == '-' || *p_ == '+'))
            ++p_;
        while (p_ < end_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '.' || *p_ == 'e' || *p_ == 'E' ||
                             *p_ == '-' || *p_ == '+')) {
            if (*p_ == '.' || *p_ == 'e' || *p_ == 'E')
                is_double = true;
            ++p_;
        }
        if (p_ == start)
            fail("unexpected character");
        std::string num(start, p_);
        if (is_double) {
            v.kind = Json::Double;
            v.d = strtod(num.c_str(), nullptr);
        } else {
            v.kind = Json::Int;
            v.i = strtoll(num.c_str(), nullptr, 10);
        }
        return v;
    }
};

inline Json parse_json(const std::string &line) { return JsonParser(line).parse(); }

// Appends s as a quoted JSON string.
inline void json_quote(std::string &out, const std::string &s)
{
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else
                out += (char)c;
        }
    }
    out += '"';
}

inline std::string json_quoted(const std::string &s)
{
    std::string out;
    json_quote(out, s);
    return out;
}

} // namespace chaos
