//! The relay is transparent and stops cleanly on bad input. (Allocation counting lives in
//! `tests/alloc`, which may define a global allocator.)

use bytes::BytesMut;

use super::*;

use crate::test_frames::result_batch;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn pump_into(input: Vec<u8>, sink: WriteHalf) -> Pump {
    Pump::new(
        Box::new(std::io::Cursor::new(input)),
        sink,
        BytesMut::new(),
        1 << 30,
        Stage::Plain,
    )
}

#[test]
fn relayed_bytes_are_the_bytes_received() {
    let input = result_batch(5_000);
    let (mut reader, writer) = tokio::io::duplex(1 << 20);
    let rt = runtime();
    let received = rt.block_on(async {
        let mut pump = pump_into(input.clone(), Box::new(writer));
        let copy = tokio::spawn(async move {
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
                .await
                .map(|_| out)
        });
        let end = pump.run().await;
        assert!(matches!(end, End::SourceClosed), "{end}");
        pump.shutdown().await;
        copy.await.unwrap().unwrap()
    });
    assert_eq!(received, input);
}

#[test]
fn a_frame_longer_than_the_limit_ends_the_pump() {
    let rt = runtime();
    let mut pump = Pump::new(
        Box::new(std::io::Cursor::new(result_batch(3))),
        Box::new(tokio::io::sink()),
        BytesMut::new(),
        16,
        Stage::Plain,
    );
    assert!(matches!(
        rt.block_on(pump.run()),
        End::Malformed(proto::Error::FrameTooLarge { .. })
    ));
}

#[test]
fn a_stream_cut_inside_a_frame_is_a_read_failure() {
    let mut input = result_batch(3);
    input.truncate(input.len() - 2);
    let rt = runtime();
    let mut pump = pump_into(input, Box::new(tokio::io::sink()));
    assert!(matches!(rt.block_on(pump.run()), End::ReadFailed(_)));
}
