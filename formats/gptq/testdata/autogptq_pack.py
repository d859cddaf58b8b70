#!/usr/bin/env python3
"""Golden qweight/qzeros words for TestAutoGPTQGolden.

The loops below follow AutoGPTQ's QuantLinear.pack (auto_gptq/nn_modules/
qlinear, the qweight loop over rows and the qzeros loop over columns, v1:
zeros - 1 before packing), in plain Python integers instead of numpy uint32.
Run: python3 formats/gptq/testdata/autogptq_pack.py
"""

M = 0xFFFFFFFF


def pack_rows(intweight, bits):
    """intweight[i][c] (inputs i, outputs c) -> qweight rows, as AutoGPTQ."""
    rows = len(intweight) // 32 * bits
    cols = len(intweight[0])
    q = [[0] * cols for _ in range(rows)]
    for c in range(cols):
        i = row = 0
        col = [r[c] for r in intweight]
        while row < rows:
            if bits in (2, 4, 8):
                for j in range(i, i + 32 // bits):
                    q[row][c] |= (col[j] << (bits * (j - i))) & M
                i += 32 // bits
                row += 1
            else:  # 3
                for j in range(i, i + 10):
                    q[row][c] |= (col[j] << (3 * (j - i))) & M
                i += 10
                q[row][c] |= (col[i] << 30) & M
                row += 1
                q[row][c] |= (col[i] >> 2) & 1
                i += 1
                for j in range(i, i + 10):
                    q[row][c] |= (col[j] << (3 * (j - i) + 1)) & M
                i += 10
                q[row][c] |= (col[i] << 31) & M
                row += 1
                q[row][c] |= (col[i] >> 1) & 0x3
                i += 1
                for j in range(i, i + 10):
                    q[row][c] |= (col[j] << (3 * (j - i) + 2)) & M
                i += 10
                row += 1
    return q


def signed(w):
    return w - (1 << 32) if w & 0x80000000 else w


def main():
    inp, out = 64, 32
    for bits in (2, 3, 4, 8):
        maxq = (1 << bits) - 1
        codes = [[((i * i * 5 + i * 7 + c * 3 + i * c * 13) >> 1) % (maxq + 1) for c in range(out)] for i in range(inp)]
        qw = pack_rows(codes, bits)
        # zeros [groups=2, out]: zeros - 1 (v1), packed along outputs: the
        # same loop on the transposed matrix.
        zeros = [[1 + (g * 5 + c * 11) % (maxq + 1 if bits < 8 else 255) for c in range(out)] for g in range(2)]
        zt = [[zeros[g][c] - 1 for g in range(2)] for c in range(out)]
        qz_t = pack_rows(zt, bits)  # [out*bits/32][groups]
        qz = [[qz_t[w][g] for w in range(len(qz_t))] for g in range(2)]
        print(f"{bits}: qweight column 0 = {[signed(r[0]) for r in qw]}")
        print(f"{bits}: qweight column 5 = {[signed(r[5]) for r in qw]}")
        print(f"{bits}: qzeros row 1 = {[signed(w) for w in qz[1]]}")


main()
