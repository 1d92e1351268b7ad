//! The index and shuffle tables the AVX-512 kernels' permutations load (built at compile
//! time), shared by the decode, x4 and prefill kernels, which are expanded once per feature
//! set; and the prefetch they share with the float kernels (`crate::x86`).

pub(super) use crate::x86::prefetch_lines;

/// `vpermt2w` indices gathering the nibble bytes of 4 Q4_0 blocks (72 bytes, as 36 words
/// across two registers): output words `8k..8k + 8` are block `k`'s words `9k + 1..9k + 9`.
pub(super) static IDX_Q4_NIB: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (9 * (j / 8) + 1 + j % 8) as i16;
        j += 1;
    }
    a
};

/// [`IDX_Q4_NIB`] for the second group of 4 blocks of a 144-byte pair of groups, taken from
/// the registers holding bytes 64..128 and 128..144: block `k`'s nibbles are words `5 + 9k..`.
pub(super) static IDX_Q4_NIB2: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (9 * (j / 8) + 5 + j % 8) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the 8 Q4_0 scales of a 144-byte pair of groups (words `9k` of bytes
/// 0..128), each repeated 4 times.
pub(super) static IDX_Q4_D8: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (9 * (j / 4)) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the 4 Q4_0 scales, each repeated 4 times (words 0..16).
pub(super) static IDX_Q4_D: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 16 {
        a[j] = (9 * (j / 4)) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices gathering the nibble bytes of 4 Q5_0 blocks (88 bytes, as 44 words
/// across two registers): output words `8k..8k + 8` are block `k`'s words `11k + 3..11k + 11`.
pub(super) static IDX_Q5_NIB: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (11 * (j / 8) + 3 + j % 8) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the 4 Q5_0 scales (words `11k`), each repeated 4 times (words 0..16),
/// then the blocks' fifth bits ([`qh_words`], words 16..24).
pub(super) static IDX_Q5_D: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 16 {
        a[j] = (11 * (j / 4)) as i16;
        j += 1;
    }
    let qh = qh_words(22, 2);
    while j < 24 {
        a[j] = qh[j - 16];
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the fifth bits of 4 Q5_0 or Q5_1 blocks (`bb` bytes, `qh` at byte
/// `off`) in words 0..8: the low halves of the 4 blocks' `qh`, then their high halves, so that
/// the two 64-bit lanes are the masks of the values of the low and of the high nibbles.
const fn qh_words(bb: usize, off: usize) -> [i16; 32] {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 8 {
        a[j] = ((bb * (j % 4) + off) / 2 + j / 4) as i16;
        j += 1;
    }
    a
}

/// [`qh_words`] of Q5_1 (24-byte blocks, `qh` at byte 4).
pub(super) static IDX_Q51_QH: [i16; 32] = qh_words(24, 4);

/// `vpermt2w` indices gathering the nibble bytes of 4 blocks of `bb` bytes (an even number)
/// whose nibbles start at byte `off` (even): output words `8k..8k + 8` are block `k`'s words
/// `(bb * k + off) / 2..` + 8.
const fn idx_nib(bb: usize, off: usize) -> [i16; 32] {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = ((bb * (j / 8) + off) / 2 + j % 8) as i16;
        j += 1;
    }
    a
}

/// `vpermt2w` indices of the f16 scale `d` (word 0) and min `m` (word 1) of 4 blocks of `bb`
/// bytes: `d` of block `k` in words `4k..4k + 4`, `m` in words `16 + 4k..16 + 4k + 4`.
const fn idx_dm(bb: usize) -> [i16; 32] {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (bb / 2 * (j % 16 / 4) + j / 16) as i16;
        j += 1;
    }
    a
}

/// [`idx_nib`] of Q4_1 (20-byte blocks, nibbles at byte 4).
pub(super) static IDX_Q41_NIB: [i16; 32] = idx_nib(20, 4);
/// [`idx_dm`] of Q4_1.
pub(super) static IDX_Q41_DM: [i16; 32] = idx_dm(20);
/// [`idx_nib`] of Q5_1 (24-byte blocks, nibbles at byte 8).
pub(super) static IDX_Q51_NIB: [i16; 32] = idx_nib(24, 8);
/// [`idx_dm`] of Q5_1.
pub(super) static IDX_Q51_DM: [i16; 32] = idx_dm(24);

/// `vpshufb` controls taking the E8M0 exponents of 4 MXFP4 blocks (bytes `17k`, so byte `k` of
/// 128-bit lane `k`) from the group's first 64 bytes into the four dwords of lane `k`,
/// zero-extended.
pub(super) static SHUF_MX_E: [i8; 64] = {
    let mut a = [-128i8; 64];
    let mut j = 0;
    while j < 16 {
        a[4 * j] = (j / 4) as i8;
        j += 1;
    }
    a
};

/// `vpshufb` controls gathering the nibbles of 4 MXFP4 blocks (bytes `17k + 1..17k + 17`) into
/// 128-bit lane `k`: `[0]` takes bytes `k + 1..16` of lane `k` of the group into the lane's
/// first bytes, `[1]` the rest, the first `k + 1` bytes of the next lane (from the group moved
/// down one lane), into the bytes [`MX_NEXT_LANE`] marks.
pub(super) static SHUF_MX_NIB: [[i8; 64]; 2] = {
    let mut a = [[-128i8; 64]; 2];
    let mut i = 0;
    while i < 64 {
        let (k, j) = (i / 16, i % 16);
        if j + k + 1 < 16 {
            a[0][i] = (j + k + 1) as i8;
        } else {
            a[1][i] = (j + k + 1 - 16) as i8;
        }
        i += 1;
    }
    a
};

/// The bytes of [`SHUF_MX_NIB`]`[1]`: bytes `15 - k..16` of lane `k`.
pub(super) const MX_NEXT_LANE: u64 = {
    let mut m = 0u64;
    let mut i = 0;
    while i < 64 {
        if i % 16 + i / 16 + 1 >= 16 {
            m |= 1 << i;
        }
        i += 1;
    }
    m
};

/// `vpermt2w` indices of the 4 Q8_0 scales of a 136-byte group (words 0, 17, 34, 51), each
/// repeated 8 times.
pub(super) static IDX_Q8_D: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (17 * (j / 8)) as i16;
        j += 1;
    }
    a
};

/// `vpshufb` controls spreading Q4_K's scales (bytes 0..8 of `[sc0..sc7, m0..m7]`, in every
/// 128-bit lane) over the `vpmaddubsw` words of the four 64-value groups as zero-extended words:
/// group `i` holds sub-blocks `a` (lanes 0-1) and `b` (lanes 2-3) with `(a, b)` = (0, 2),
/// (1, 3), (4, 6), (5, 7).
pub(super) static SHUF_Q4K_SC: [[i8; 64]; 4] = {
    let pairs = [(0, 2), (1, 3), (4, 6), (5, 7)];
    let mut a = [[0i8; 64]; 4];
    let mut i = 0;
    while i < 4 {
        let mut j = 0;
        while j < 64 {
            a[i][j] = if j % 2 == 1 {
                -128
            } else if j < 32 {
                pairs[i].0
            } else {
                pairs[i].1
            };
            j += 1;
        }
        i += 1;
    }
    a
};

/// `vpermw` indices spreading Q6_K's 16 scales over the `vpmaddubsw` words of the four
/// 64-value groups: group `i` holds sub-blocks `4i..4i + 4`, 8 words each.
pub(super) static IDX_Q6K_SC: [[i16; 32]; 4] = {
    let mut a = [[0i16; 32]; 4];
    let mut i = 0;
    while i < 4 {
        let mut j = 0;
        while j < 32 {
            a[i][j] = (4 * i + j / 8) as i16;
            j += 1;
        }
        i += 1;
    }
    a
};

/// Per-128-bit-lane shift counts of Q6_K's high bits: lanes 0-1 by `a`, lanes 2-3 by `b`.
pub(super) static Q6K_SHIFTS: [[i16; 32]; 2] = {
    let mut a = [[0i16; 32]; 2];
    let mut j = 0;
    while j < 32 {
        a[0][j] = if j < 16 { 0 } else { 2 };
        a[1][j] = if j < 16 { 4 } else { 6 };
        j += 1;
    }
    a
};

/// `vpshufb` controls spreading byte `b` of every dword over the dword's 4 bytes.
pub(super) static SHUF_DW_BYTE: [[i8; 64]; 4] = {
    let mut a = [[0i8; 64]; 4];
    let mut b = 0;
    while b < 4 {
        let mut j = 0;
        while j < 64 {
            a[b][j] = (j % 16 / 4 * 4 + b) as i8;
            j += 1;
        }
        b += 1;
    }
    a
};

/// `vpermd` indices grouping dword `v` of the four 128-bit lanes: `[0, 4, 8, 12, 1, 5, ..]`.
pub(super) static IDX_TR: [i32; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// `vptestmb` masks of Q5_K's fifth bits (`qh` in both 256-bit halves) for the four 64-value
/// groups of the decode kernel (sub-blocks `a` in the low half, `b` in the high one, as in
/// [`SHUF_Q4K_SC`]): bit `a`, resp. `b`, in every byte.
pub(super) static Q5K_HBITS: [[u8; 64]; 4] = {
    let pairs = [(0, 2), (1, 3), (4, 6), (5, 7)];
    let mut a = [[0u8; 64]; 4];
    let mut i = 0;
    while i < 4 {
        let mut j = 0;
        while j < 64 {
            a[i][j] = 1 << if j < 32 { pairs[i].0 } else { pairs[i].1 };
            j += 1;
        }
        i += 1;
    }
    a
};

/// `vptestmb` masks for natural 64-value chunk `c` of the 32-byte bit planes (in both 256-bit
/// halves) of Q5_K (`qh`: value `32j + l` is bit `j` of `qh[l]`) and Q3_K (`hmask`: value
/// `64c + 32e + l` is bit `2c + e` of `hmask[l]`): bit `2c` in the low half, `2c + 1` in the
/// high one.
pub(super) static HBITS_NAT: [[u8; 64]; 4] = {
    let mut a = [[0u8; 64]; 4];
    let mut c = 0;
    while c < 4 {
        let mut j = 0;
        while j < 64 {
            a[c][j] = 1 << (2 * c + j / 32);
            j += 1;
        }
        c += 1;
    }
    a
};

/// IQ4_NL's levels, `|v|`, in every 128-bit lane (`vpshufb` by nibble); the negative levels
/// are exactly the nibbles below 8 (checked at compile time).
pub(super) static IQ4_ABS: [i8; 64] = {
    let kv = frugal_quant::tables::KVALUES_IQ4NL;
    let mut a = [0i8; 64];
    let mut j = 0;
    while j < 64 {
        let v = kv[j % 16];
        assert!(
            (v < 0) == (j % 16 < 8),
            "IQ4_NL's negative levels are nibbles 0..8"
        );
        a[j] = if v < 0 { -v } else { v };
        j += 1;
    }
    a
};

/// IQ4_NL's levels in every 128-bit lane (`vpshufb` by nibble).
pub(super) static IQ4_LEVELS: [i8; 64] = {
    let kv = frugal_quant::tables::KVALUES_IQ4NL;
    let mut a = [0i8; 64];
    let mut j = 0;
    while j < 64 {
        a[j] = kv[j % 16];
        j += 1;
    }
    a
};

/// `vpermt2q` indices interleaving the 128-bit lanes of two registers `a`, `b`: `[a0, b0, a1,
/// b1]` (`[0]`) and `[a2, b2, a3, b3]` (`[1]`).
pub(super) static IDX_ILV128: [[i64; 8]; 2] =
    [[0, 1, 8, 9, 2, 3, 10, 11], [4, 5, 12, 13, 6, 7, 14, 15]];

/// `vpshufb` controls spreading the 16 word scales of Q2_K and Q3_K (natural order, as
/// `[s0..s8, s0..s8, s8..s16, s8..s16]` over the four 128-bit lanes) over the `vpmaddubsw`
/// words of register `k` of their decode kernels: register `k` holds values `32k..32k + 32`
/// (sub-blocks `2k`, `2k + 1`: lanes 0, 1) and `128 + 32k..` (sub-blocks `8 + 2k`, `9 + 2k`:
/// lanes 2, 3), so lane `l` repeats word `2k + l % 2` of its source lane.
pub(super) static SHUF_Q2K_SC: [[i8; 64]; 4] = {
    let mut a = [[0i8; 64]; 4];
    let mut k = 0;
    while k < 4 {
        let mut j = 0;
        while j < 64 {
            a[k][j] = (2 * (2 * k + (j / 16) % 2) + j % 2) as i8;
            j += 1;
        }
        k += 1;
    }
    a
};

/// `vpshufb` controls spreading IQ4_XS's 8 word scales (in every 128-bit lane) over the
/// `vpmaddubsw` words of the nibble registers of half `h` of its decode kernel: lane `l` holds
/// sub-block `4h + l`.
pub(super) static SHUF_IQ4_SC: [[i8; 64]; 2] = {
    let mut a = [[0i8; 64]; 2];
    let mut h = 0;
    while h < 2 {
        let mut j = 0;
        while j < 64 {
            a[h][j] = (2 * (4 * h + j / 16) + j % 2) as i8;
            j += 1;
        }
        h += 1;
    }
    a
};

/// `vptestmb` masks of Q3_K's `hmask` bits (32 bytes in both 256-bit halves) for register `k`
/// of its decode kernel (see [`SHUF_Q2K_SC`]): value `128h + 32k + l` takes bit `4h + k` of
/// `hmask[l]`.
pub(super) static Q3K_HBITS: [[u8; 64]; 4] = {
    let mut a = [[0u8; 64]; 4];
    let mut k = 0;
    while k < 4 {
        let mut j = 0;
        while j < 64 {
            a[k][j] = 1 << (4 * (j / 32) + k);
            j += 1;
        }
        k += 1;
    }
    a
};

/// The IQ1_M scale word of each piece of 16 (`vpermw` of the four words): piece `m` in word
/// `m / 4`, at bit `3 * (m % 4)` ([`SH_IQ1M_SC`]).
pub(super) static IDX_IQ1M_SC: [i16; 16] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
pub(super) static SH_IQ1M_SC: [i16; 16] = [0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9];

/// The words `3^n` by which each 128-bit lane of the four source registers of a TQ1_0 block is
/// multiplied (`levels_tq1`): `qs[0..32]` by 1, 3 (register 0), 9, 27 (1), 81 (2, low half);
/// `qs[32..48]` by 1, 3 (2, high half), 9, 27, 81 (3, lanes 0..3); `qh` by 1, 3, 9, 27, one
/// dword each (3, lane 3).
pub(super) static MUL_TQ1: [[i16; 32]; 4] = {
    let lanes: [[i16; 4]; 4] = [[1, 1, 3, 3], [9, 9, 27, 27], [81, 81, 1, 3], [9, 27, 81, 0]];
    let mut a = [[0i16; 32]; 4];
    let mut c = 0;
    while c < 4 {
        let mut w = 0;
        while w < 32 {
            a[c][w] = if c == 3 && w >= 24 {
                [1, 3, 9, 27][(w - 24) / 2]
            } else {
                lanes[c][w / 8]
            };
            w += 1;
        }
        c += 1;
    }
    a
};
