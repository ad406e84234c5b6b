//! A minimal `.npz` writer: a zip of stored (uncompressed) `.npy` entries.

pub enum Arr<'a> {
    F32(&'a [usize], &'a [f32]),
    F64(&'a [usize], &'a [f64]),
    I64(&'a [usize], &'a [i64]),
    /// An arbitrary dtype string and raw little-endian bytes.
    Raw(&'a str, &'a [usize], &'a [u8]),
    /// An arbitrary header (the dict literal) and raw bytes.
    Header(&'a str, &'a [u8]),
}

fn npy(a: &Arr) -> Vec<u8> {
    if let Arr::Header(header, data) = a {
        return npy_with_header(header.to_string(), data);
    }
    let (descr, shape, data): (&str, &[usize], Vec<u8>) = match a {
        Arr::F32(s, d) => ("<f4", s, d.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Arr::F64(s, d) => ("<f8", s, d.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Arr::I64(s, d) => ("<i8", s, d.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Arr::Raw(t, s, d) => (t, s, d.to_vec()),
        Arr::Header(..) => unreachable!("written above"),
    };
    let dims = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    npy_with_header(header, &data)
}

fn npy_with_header(mut header: String, data: &[u8]) -> Vec<u8> {
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

pub fn write(entries: &[(&str, Arr)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, arr) in entries {
        let data = npy(arr);
        let name = format!("{name}.npy");
        let mut crc = flate2::Crc::new();
        crc.update(&data);
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend(20u16.to_le_bytes()); // version needed
            v.extend(0u16.to_le_bytes()); // flags
            v.extend(0u16.to_le_bytes()); // stored
            v.extend(0u16.to_le_bytes()); // time
            v.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
            v.extend(crc.sum().to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes()); // extra
        };
        out.extend(0x04034b50u32.to_le_bytes());
        common(&mut out);
        out.extend(name.as_bytes());
        out.extend(&data);
        central.extend(0x02014b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend(0u16.to_le_bytes()); // comment
        central.extend(0u16.to_le_bytes()); // disk
        central.extend(0u16.to_le_bytes()); // internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x06054b50u32.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}
