//! Dequantization of GGML tensor types to fp32, following the block layouts of ggml's
//! reference `dequantize_row_*` (block structs are packed little-endian):
//!
//! | type | block | bytes | layout |
//! |---|---|---|---|
//! | Q4_0 | 32 | 18 | `d: f16`, 16 bytes of nibbles; `x = (q - 8) · d` |
//! | Q4_1 | 32 | 20 | `d, m: f16`, nibbles; `x = q · d + m` |
//! | Q5_0 | 32 | 22 | `d: f16`, `qh: u32` (5th bits), nibbles; `x = (q - 16) · d` |
//! | Q5_1 | 32 | 24 | `d, m: f16`, `qh`, nibbles; `x = q · d + m` |
//! | Q8_0 | 32 | 34 | `d: f16`, 32 × i8; `x = q · d` |
//! | Q4_K | 256 | 144 | `d, dmin: f16`, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles |
//! | Q5_K | 256 | 176 | as Q4_K plus 32 bytes of 5th bits |
//! | Q6_K | 256 | 210 | 128 bytes low nibbles, 64 bytes high 2-bits, 16 × i8 scales, `d: f16` |
//!
//! In the 32-blocks, element `j < 16` is the low nibble of byte `j` and element `j + 16` its high
//! nibble. Checked against the independent implementation of the `gguf` Python package
//! (`tools/make_gguf_fixture.py`).

use half::{bf16, f16};

/// The GGML tensor types swiattn reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

/// Names of the GGML type ids, for error messages.
fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16..=23 => "IQ*",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        _ => "unknown",
    }
}

const SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K";

impl GgmlType {
    /// The type of a GGML type id, or an error naming the unsupported type.
    pub fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            other => {
                return Err(format!(
                    "unsupported GGML tensor type {} (id {other}); supported: {SUPPORTED}",
                    ggml_type_name(other)
                ));
            }
        })
    }

    /// Elements per block and bytes per block.
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }

    /// Bytes taken by `n` elements.
    pub fn bytes_for(self, n: usize) -> Result<usize, String> {
        let (elems, bytes) = self.block();
        if n % elems != 0 {
            return Err(format!("{n} elements is not a whole number of {self:?} blocks of {elems}"));
        }
        (n / elems).checked_mul(bytes).ok_or_else(|| format!("{n} {self:?} elements are more bytes than fit in memory"))
    }

    /// Dequantize `n` elements from `bytes`.
    pub fn dequantize(self, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
        let need = self.bytes_for(n)?;
        if bytes.len() < need {
            return Err(format!("{} bytes for {n} {self:?} elements, need {need}", bytes.len()));
        }
        let (elems, size) = self.block();
        let mut out = Vec::with_capacity(n);
        for block in bytes[..need].chunks_exact(size) {
            match self {
                GgmlType::F32 => out.push(f32::from_le_bytes(block.try_into().unwrap())),
                GgmlType::F16 => out.push(f16_at(block, 0)),
                GgmlType::BF16 => out.push(bf16::from_le_bytes([block[0], block[1]]).to_f32()),
                GgmlType::Q4_0 => q4_0(block, &mut out),
                GgmlType::Q4_1 => q4_1(block, &mut out),
                GgmlType::Q5_0 => q5_0(block, &mut out),
                GgmlType::Q5_1 => q5_1(block, &mut out),
                GgmlType::Q8_0 => q8_0(block, &mut out),
                GgmlType::Q4K => q4_k(block, &mut out),
                GgmlType::Q5K => q5_k(block, &mut out),
                GgmlType::Q6K => q6_k(block, &mut out),
            }
        }
        debug_assert_eq!(out.len(), n, "{elems}-element blocks");
        Ok(out)
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Low nibbles of `qs` then high nibbles, each mapped through `f`.
fn nibbles(qs: &[u8], out: &mut Vec<f32>, f: impl Fn(u8) -> f32) {
    out.extend(qs.iter().map(|&q| f(q & 0x0F)));
    out.extend(qs.iter().map(|&q| f(q >> 4)));
}

fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    nibbles(&b[2..18], out, |q| (q as f32 - 8.0) * d);
}

fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    nibbles(&b[4..20], out, |q| q as f32 * d + m);
}

/// The 32 five-bit values of a Q5 block: nibble `j` gets bit `j` (low half) or `j + 16` (high
/// half) of `qh` as its fifth bit.
fn five_bits(qh: u32, qs: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for j in 0..16 {
        v[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        v[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    v
}

fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes(b[2..6].try_into().unwrap());
    out.extend(five_bits(qh, &b[6..22]).iter().map(|&q| (q as f32 - 16.0) * d));
}

fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes(b[4..8].try_into().unwrap());
    out.extend(five_bits(qh, &b[8..24]).iter().map(|&q| q as f32 * d + m));
}

fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
}

/// Scale and min `j < 8` of a K-quant super-block, from the 12 packed bytes.
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
    } else {
        (((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4)) as f32, ((s[j + 4] >> 4) | ((s[j] >> 6) << 4)) as f32)
    }
}

fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        out.extend(q.iter().map(|&x| d * sc1 * (x & 0x0F) as f32 - dmin * m1));
        out.extend(q.iter().map(|&x| d * sc2 * (x >> 4) as f32 - dmin * m2));
    }
}

fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let high = |l: usize, u: u8| if qh[l] & u != 0 { 16.0 } else { 0.0 };
        out.extend(q.iter().enumerate().map(|(l, &x)| d * sc1 * ((x & 0x0F) as f32 + high(l, u1)) - dmin * m1));
        out.extend(q.iter().enumerate().map(|(l, &x)| d * sc2 * ((x >> 4) as f32 + high(l, u2)) - dmin * m2));
    }
}

fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for half in 0..2 {
        let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| sc[is + k] as i8 as f32;
            y[l] = d * s(0) * q1 as f32;
            y[l + 32] = d * s(2) * q2 as f32;
            y[l + 64] = d * s(4) * q3 as f32;
            y[l + 96] = d * s(6) * q4 as f32;
        }
        out.extend_from_slice(&y);
    }
}
