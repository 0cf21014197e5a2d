"""colvlm_edge.sources: folder, video and rosbag2 sources, open_source, image_from_ros."""

import logging
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from colvlm_edge.sources import (
    BagSource,
    FolderSource,
    SyntheticSource,
    VideoSource,
    image_from_ros,
    open_source,
)
from colvlm_edge.sources import _pick as pick_source
from colvlm_msgs.image_codec import ImageDecodeError, ImageTooLarge, encode_image
from tools.hostile_inputs import corrupt_sqlite_bag, forged_jpeg

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
S = 1_000_000_000  # ns per s


def pattern(value, height=6, width=8):
    """A small image whose pixels differ by position and channel, so swaps show."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 20 + value, y * 30 + value, np.full_like(x, value)], -1).astype(
        np.uint8)  # (H, W, 3) uint8 BGR


# --- image_from_ros ------------------------------------------------------------------------

def raw_msg(image_bgr, encoding, pad=0):
    """An Image-like message holding image_bgr in encoding, each row padded by pad bytes."""
    convert = {'bgr8': None, 'rgb8': cv2.COLOR_BGR2RGB, 'mono8': cv2.COLOR_BGR2GRAY,
               'bgra8': cv2.COLOR_BGR2BGRA, 'rgba8': cv2.COLOR_BGR2RGBA}[encoding]
    pixels = image_bgr if convert is None else cv2.cvtColor(image_bgr, convert)
    height, width = image_bgr.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=height, width=width,
                           step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'bgra8', 'rgba8'])
@pytest.mark.parametrize('pad', [0, 5])
def test_image_from_ros_colour_encodings(encoding, pad):
    image = pattern(7)
    converted = image_from_ros(raw_msg(image, encoding, pad))
    assert converted.dtype == np.uint8 and np.array_equal(converted, image)


def test_image_from_ros_mono_and_array_data():
    grey = cv2.cvtColor(pattern(3), cv2.COLOR_BGR2GRAY)
    msg = raw_msg(pattern(3), 'mono8', pad=3)
    msg.data = np.frombuffer(msg.data, np.uint8).copy()  # rosbags hands out arrays
    converted = image_from_ros(msg)
    assert converted.shape == (6, 8, 3) and all(
        np.array_equal(converted[..., c], grey) for c in range(3))


def test_image_from_ros_compressed():
    image = pattern(9)
    msg = SimpleNamespace(format='bgr8; png compressed bgr8',
                          data=list(encode_image(image, 'png', 1)))
    assert np.array_equal(image_from_ros(msg), image)
    with pytest.raises(ImageDecodeError):
        image_from_ros(SimpleNamespace(format='jpeg', data=b'junk'))


def test_image_from_ros_rejects_bad_messages():
    with pytest.raises(ValueError, match="encoding must be one of .* got 'bayer_rggb8'"):
        image_from_ros(SimpleNamespace(encoding='bayer_rggb8', height=2, width=2, step=2,
                                       data=b'\0' * 4))
    with pytest.raises(ValueError, match='does not fit'):
        image_from_ros(SimpleNamespace(encoding='bgr8', height=2, width=2, step=6,
                                       data=b'\0' * 11))


# --- folder --------------------------------------------------------------------------------

def test_folder_source_skips_a_corrupt_file_once(tmp_path, caplog):
    for name, value in (('a.png', 10), ('c.bmp', 30), ('d.png', 40)):
        cv2.imwrite(str(tmp_path / name), pattern(value))
    (tmp_path / 'b_broken.png').write_bytes(b'\x89PNG not really')
    (tmp_path / 'notes.txt').write_text('not an image')
    with caplog.at_level(logging.WARNING):
        source = FolderSource(tmp_path, fps=10.0, start_ns=5 * S, frame_id='cam0')
        frames = list(source)
    assert [int(f.image[0, 0, 2]) for f in frames] == [10, 30, 40]
    assert [f.stamp_ns for f in frames] == [5 * S, 5 * S + S // 10, 5 * S + 2 * S // 10]
    assert {f.frame_id for f in frames} == {'cam0'}
    assert source.dropped == 1
    assert len([r for r in caplog.records if 'b_broken.png' in r.getMessage()]) == 1


def test_folder_source_loops_with_increasing_stamps(tmp_path, caplog):
    for name, value in (('1.png', 1), ('2.png', 2)):
        cv2.imwrite(str(tmp_path / name), pattern(value))
    (tmp_path / '3.png').write_bytes(b'')
    with caplog.at_level(logging.WARNING):
        source = FolderSource(tmp_path, loop=True)
        frames = [next(source) for _ in range(7)]
    assert [int(f.image[0, 0, 2]) for f in frames] == [1, 2, 1, 2, 1, 2, 1]
    stamps = [f.stamp_ns for f in frames]
    assert (np.diff(stamps) > 0).all()
    assert source.dropped == 1 and len(caplog.records) == 1


def test_folder_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        FolderSource(tmp_path / 'missing')
    with pytest.raises(ValueError, match='has no images'):
        FolderSource(tmp_path)
    (tmp_path / 'x.png').write_bytes(b'broken')
    with pytest.raises(ValueError, match='no decodable image among 1 file'):
        list(FolderSource(tmp_path, loop=True))  # says so, never spins on a bad-only folder


def test_folder_source_refuses_an_image_declaring_too_many_pixels(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / 'a.png'), pattern(10))
    (tmp_path / 'b_bomb.jpg').write_bytes(forged_jpeg(13000, 13000))  # 507 MB if decoded
    with caplog.at_level(logging.WARNING):
        source = FolderSource(tmp_path)
        frames = list(source)
    assert len(frames) == 1 and source.refused == 1 and source.dropped == 0
    (line,) = [r.getMessage() for r in caplog.records if 'b_bomb.jpg' in r.getMessage()]
    assert line.startswith('refusing ') and '13000x13000' in line


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs POSIX links and pipes')
def test_folder_source_skips_link_loops_devices_and_pipes_with_a_count(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / 'a.png'), pattern(10))
    (tmp_path / 'loop.png').symlink_to(tmp_path / 'loop.png')
    (tmp_path / 'device.png').symlink_to(os.devnull)
    os.mkfifo(tmp_path / 'pipe.jpg')  # reading it would block the source forever
    (tmp_path / 'dangling.png').symlink_to(tmp_path / 'gone.png')
    with caplog.at_level(logging.WARNING):
        source = FolderSource(tmp_path)
        frames = list(source)
    assert len(frames) == 1 and source.dropped == 4
    warned = ' '.join(r.getMessage() for r in caplog.records)
    for name in ('loop.png', 'device.png', 'pipe.jpg', 'dangling.png'):
        assert name in warned


def test_a_single_image_file_is_a_source_and_a_truncated_one_is_refused(tmp_path):
    data = encode_image(pattern(10, 64, 64), 'jpeg', 90)
    (tmp_path / 'one.jpg').write_bytes(data)
    (tmp_path / 'cut.jpg').write_bytes(data[:len(data) // 2])
    source = open_source(str(tmp_path / 'one.jpg'))
    assert isinstance(source, FolderSource) and len(list(source)) == 1
    cut = open_source(str(tmp_path / 'cut.jpg'))  # never the video reader's half a frame
    with pytest.raises(ValueError, match="image '.*cut.jpg': no decodable image"):
        list(cut)
    assert cut.dropped == 1


def test_a_file_no_reader_opens_is_one_line_naming_it(tmp_path):
    (tmp_path / 'a.txt').write_text('not a video')
    with pytest.raises(ValueError) as caught:
        open_source(str(tmp_path / 'a.txt'))
    message = str(caught.value)
    assert 'a.txt' in message and 'PosixPath' not in message and '\n' not in message


# --- rosbag2 -------------------------------------------------------------------------------

def ros_header(stamp_ns, frame_id='cam_optical'):
    Header = TYPESTORE.types['std_msgs/msg/Header']
    Time = TYPESTORE.types['builtin_interfaces/msg/Time']
    return Header(stamp=Time(sec=stamp_ns // S, nanosec=stamp_ns % S), frame_id=frame_id)


def ros_image(image_bgr, encoding, stamp_ns, pad=0):
    plain = raw_msg(image_bgr, encoding, pad)
    return TYPESTORE.types['sensor_msgs/msg/Image'](
        header=ros_header(stamp_ns), height=plain.height, width=plain.width,
        encoding=encoding, is_bigendian=0, step=plain.step,
        data=np.frombuffer(plain.data, np.uint8).copy())


def ros_compressed(image_bgr, codec, stamp_ns):
    data = np.frombuffer(encode_image(image_bgr, codec, 1 if codec == 'png' else 95), np.uint8)
    return TYPESTORE.types['sensor_msgs/msg/CompressedImage'](
        header=ros_header(stamp_ns), format=f'bgr8; {codec} compressed bgr8', data=data.copy())


def write_bag(path, storage, with_images=True):
    """A bag with a String topic, a raw Image topic and a CompressedImage topic."""
    String = TYPESTORE.types['std_msgs/msg/String']
    with Writer(path, version=9, storage_plugin=storage) as writer:
        def add(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=TYPESTORE)

        def write(connection, log_ns, msg):
            writer.write(connection, log_ns, TYPESTORE.serialize_cdr(msg, connection.msgtype))

        chatter = add('/chatter', 'std_msgs/msg/String')
        write(chatter, 9 * S, String(data='hello'))
        if not with_images:
            return
        raw = add('/cam/image_raw', 'sensor_msgs/msg/Image')
        compressed = add('/cam/image/compressed', 'sensor_msgs/msg/CompressedImage')
        write(raw, 10 * S + 1_000_000, ros_image(pattern(1), 'bgr8', 10 * S))
        write(compressed, 10 * S + 2_000_000, ros_compressed(pattern(11), 'png', 10 * S))
        # A zero header stamp falls back to the log time.
        write(raw, 10 * S + 50_000_000, ros_image(pattern(2), 'rgb8', 0))
        write(compressed, 10 * S + 60_000_000, ros_compressed(pattern(12), 'jpeg', 10 * S + 5))
        # The same stamp as the previous frame: nudged 1 ns forward to stay unique.
        write(raw, 10 * S + 90_000_000, ros_image(pattern(3), 'mono8', 10 * S + 50_000_000, 2))


@pytest.mark.parametrize('storage', [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_bag_source_reads_raw_and_compressed_in_order(tmp_path, storage):
    bag = tmp_path / 'bag'
    write_bag(bag, storage)
    with BagSource(bag) as source:  # default: the first image topic
        assert source.topic == '/cam/image_raw'
        frames = list(source)
    assert [f.stamp_ns for f in frames] == [10 * S, 10 * S + 50_000_000, 10 * S + 50_000_001]
    assert np.array_equal(frames[0].image, pattern(1))
    assert np.array_equal(frames[1].image, pattern(2))
    assert np.array_equal(frames[2].image[..., 0], cv2.cvtColor(pattern(3), cv2.COLOR_BGR2GRAY))
    assert frames[0].frame_id == 'cam_optical'

    source = open_source(str(bag), topic='/cam/image/compressed')
    assert isinstance(source, BagSource)
    frames = list(source)
    source.close()
    assert [f.stamp_ns for f in frames] == [10 * S, 10 * S + 5]
    assert np.array_equal(frames[0].image, pattern(11))
    assert np.abs(frames[1].image.astype(int) - pattern(12)).mean() < 6


def test_bag_storage_file_opens_directly(tmp_path):
    bag = tmp_path / 'bag'
    write_bag(bag, StoragePlugin.MCAP)
    (storage_file,) = bag.glob('*.mcap')
    source = open_source(str(storage_file))
    assert isinstance(source, BagSource) and len(list(source)) == 3


def test_bag_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        BagSource(tmp_path / 'missing')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        open_source(str(tmp_path / 'missing.mcap'))
    no_images = tmp_path / 'no_images'
    write_bag(no_images, StoragePlugin.SQLITE3, with_images=False)
    with pytest.raises(ValueError, match=r"has no image topic.*'/chatter'"):
        BagSource(no_images)
    images = tmp_path / 'images'
    write_bag(images, StoragePlugin.MCAP)
    with pytest.raises(ValueError, match="topic '/chatter' is not an image topic"):
        BagSource(images, topic='/chatter')
    unknown = tmp_path / 'recording.bag9'
    unknown.write_bytes(b'\0' * 16)
    with pytest.raises(ValueError, match='cannot read bag .*Unrecognized storage format'):
        BagSource(unknown)


# --- video and open_source -----------------------------------------------------------------

def test_video_source_reads_a_file_at_its_frame_rate(tmp_path):
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 25.0, (64, 48))
    if not writer.isOpened():
        pytest.skip('this OpenCV build cannot write MJPG video')
    for value in (40, 120, 200):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    source = open_source(str(path), start_ns=0, frame_id='video')
    assert isinstance(source, VideoSource)
    frames = list(source)
    assert [f.stamp_ns for f in frames] == [0, 40_000_000, 80_000_000]
    assert [int(round(f.image.mean())) for f in frames] == pytest.approx([40, 120, 200], abs=3)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].frame_id == 'video'


def test_open_source_routing(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'bagdir').mkdir()
    (tmp_path / 'bagdir' / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}')
    (tmp_path / 'clip.mp4').write_bytes(b'')
    assert pick_source('synthetic')[0] is SyntheticSource
    assert pick_source('0') == (VideoSource, 0)
    assert pick_source('rtsp://camera.local/stream') == (VideoSource,
                                                         'rtsp://camera.local/stream')
    assert pick_source(str(tmp_path / 'images'))[0] is FolderSource
    assert pick_source(str(tmp_path / 'bagdir'))[0] is BagSource
    assert pick_source(str(tmp_path / 'x.db3'))[0] is BagSource
    assert pick_source(str(tmp_path / 'clip.mp4'))[0] is VideoSource
    with pytest.raises(FileNotFoundError, match="is not 'synthetic'"):
        open_source(str(tmp_path / 'nothing.png'))
    with pytest.raises(ValueError, match='non-empty string'):
        open_source('')


def test_open_source_options(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), pattern(1))
    source = open_source(str(tmp_path), loop=None, topic=None, fps=5.0)  # None = not set
    assert isinstance(source, FolderSource) and not source.loop
    with pytest.raises(ValueError, match=r"\['topic'\] do not apply to a folder source"):
        open_source(str(tmp_path), topic='/cam')
    with pytest.raises(ValueError, match='fps'):
        open_source(str(tmp_path), fps=0)


def test_synthetic_source_is_deterministic():
    first = open_source('synthetic', seed=3, count=2, start_ns=0)
    second = SyntheticSource(seed=3, count=2, start_ns=0)
    a, b = list(first), list(second)
    assert len(a) == 2 and [f.stamp_ns for f in a] == [0, 33_333_333]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert a[0].image.ndim == 3 and a[0].image.shape[2] == 3 and a[0].image.dtype == np.uint8
    assert a[0].image.shape == (480, 640, 3) and a[0].image.std() > 10  # not a flat frame


def test_index_clock_anchors_at_the_first_stamp_not_at_creation():
    import time

    from colvlm_edge.sources.frame import IndexClock

    clock = IndexClock(fps=10.0)
    time.sleep(0.2)  # a source that takes a while to read its first frame
    before = time.time_ns()
    first = clock.stamp(0)
    assert first >= before  # not 0.2 s older than the frame it stamps
    assert clock.stamp(3) - first == 300_000_000
    assert IndexClock(fps=10.0, start_ns=7).stamp(1) == 100_000_007



def test_bag_source_refuses_an_image_declaring_too_many_pixels(tmp_path):
    bag = tmp_path / 'bag'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection('/cam/image/compressed',
                                           'sensor_msgs/msg/CompressedImage', typestore=TYPESTORE)
        bomb = TYPESTORE.types['sensor_msgs/msg/CompressedImage'](
            header=ros_header(S), format='jpeg',
            data=np.frombuffer(forged_jpeg(30000, 30000), np.uint8).copy())
        for log_ns, message in ((S, bomb), (2 * S, ros_compressed(pattern(5), 'png', 2 * S))):
            writer.write(connection, log_ns, TYPESTORE.serialize_cdr(message, connection.msgtype))
    with BagSource(bag) as source:
        frames = list(source)
    assert [f.stamp_ns for f in frames] == [2 * S] and source.refused == 1


def test_a_raw_image_over_the_limit_is_refused_before_reshaping():
    with pytest.raises(ImageTooLarge, match='8x6'):
        image_from_ros(raw_msg(pattern(1), 'bgr8'), max_pixels=47)
    assert image_from_ros(raw_msg(pattern(1), 'bgr8'), max_pixels=48).shape == (6, 8, 3)


def test_a_bag_corrupted_mid_file_raises_out_of_the_source(tmp_path):
    """The source does not hide it: colvlm_edge.source_runner reports it (test_source_runner)."""
    source = BagSource(corrupt_sqlite_bag(tmp_path / 'bag'))
    read = []
    with pytest.raises(Exception, match='malformed'):
        for frame in source:
            read.append(frame)
    assert 0 < len(read) < 30
