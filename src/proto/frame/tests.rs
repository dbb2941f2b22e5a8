use super::*;

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A batch as a server sends it for `SELECT 1`: RowDescription, DataRow, CommandComplete, ReadyForQuery.
fn select_one_batch() -> Vec<u8> {
    let mut rd = Vec::new();
    rd.extend_from_slice(&1u16.to_be_bytes());
    rd.extend_from_slice(b"?column?\0");
    rd.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ]);
    let mut batch = frame(b'T', &rd);
    batch.extend(frame(b'D', &[0, 1, 0, 0, 0, 1, b'1']));
    batch.extend(frame(b'C', b"SELECT 1\0"));
    batch.extend(frame(b'Z', b"I"));
    batch
}

#[test]
fn walks_every_complete_frame() {
    let batch = select_one_batch();
    let mut frames = Frames::new(&batch, 1 << 20);
    let tags: Vec<u8> = frames.by_ref().map(|f| f.unwrap().tag()).collect();
    assert_eq!(tags, b"TDCZ");
    assert_eq!(frames.consumed(), batch.len());
}

#[test]
fn every_split_point_yields_the_same_frames() {
    let batch = select_one_batch();
    let whole: Vec<Vec<u8>> = Frames::new(&batch, 1 << 20)
        .map(|f| f.unwrap().bytes().to_vec())
        .collect();
    for split in 0..=batch.len() {
        // Feed the first `split` bytes, take what is complete, then feed the rest.
        let (head, _) = batch.split_at(split);
        let mut first = Frames::new(head, 1 << 20);
        let mut got: Vec<Vec<u8>> = first
            .by_ref()
            .map(|f| f.unwrap().bytes().to_vec())
            .collect();
        let consumed = first.consumed();
        assert!(consumed <= split);
        let mut second = Frames::new(&batch[consumed..], 1 << 20);
        got.extend(second.by_ref().map(|f| f.unwrap().bytes().to_vec()));
        assert_eq!(got, whole, "split at {split}");
        assert_eq!(consumed + second.consumed(), batch.len());
    }
}

#[test]
fn every_prefix_of_a_frame_is_incomplete() {
    let f = frame(b'Q', b"SELECT 1\0");
    for end in 0..f.len() {
        let mut frames = Frames::new(&f[..end], 1 << 20);
        assert!(frames.next().is_none(), "prefix of {end} bytes");
        assert_eq!(frames.consumed(), 0);
    }
    assert_eq!(
        Frames::new(&f, 1 << 20).next().unwrap().unwrap().body(),
        b"SELECT 1\0"
    );
}

#[test]
fn length_below_four_is_malformed() {
    for len in 0u32..4 {
        let mut bytes = vec![b'Q'];
        bytes.extend_from_slice(&len.to_be_bytes());
        let err = Frames::new(&bytes, 1 << 20).next().unwrap().unwrap_err();
        assert_eq!(
            err,
            Error::Malformed {
                what: "message length"
            }
        );
    }
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    // Only the header is present: the limit is enforced before the body arrives.
    let mut bytes = vec![b'd'];
    bytes.extend_from_slice(&(100u32 + 4).to_be_bytes());
    assert_eq!(
        parse_header(&bytes, 50),
        Err(Error::FrameTooLarge {
            size: 105,
            limit: 50
        })
    );
    // A negative length is a huge frame, not a small one.
    let mut neg = vec![b'd'];
    neg.extend_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        parse_header(&neg, 1 << 30),
        Err(Error::FrameTooLarge { .. })
    ));
}

#[test]
fn empty_body_frames_are_complete() {
    let sync = frame(b'S', b"");
    let f = Frames::new(&sync, 1 << 20).next().unwrap().unwrap();
    assert_eq!(f.tag(), b'S');
    assert!(f.body().is_empty());
}
