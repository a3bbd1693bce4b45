import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  applyTransform, centerCrop, centerCropOffset, cropHWC, floatToByte, floatToImage, fromFloat, imageToFloat, randomCrop,
  randomCropOffset, resizeBilinearCv, resizeBilinearCvWindow, Rng, roundHalfEven, smallestMaxSize, smallestMaxSizeShape, toFloat,
} from '../src/index.js';

const fixtures = JSON.parse(readFileSync(new URL('./fixtures/cv2_resize.json', import.meta.url), 'utf8')) as {
  opencv: string;
  small: { h: number; w: number; c: number; nh: number; nw: number; src: number[]; out: number[] }[];
  large: { h: number; w: number; c: number; nh: number; nw: number; sha256: string; first: number[] }[];
  smallest_max_size: { h: number; w: number; size: number; out: [number, number] }[];
};

/** Same as pattern() in fixtures/make_cv2_fixtures.py. */
function pattern(h: number, w: number, c: number): Uint8Array {
  const out = new Uint8Array(h * w * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) out[(y * w + x) * c + k] = (Math.imul(y, 73856093) ^ Math.imul(x, 19349663) ^ Math.imul(k, 83492791)) & 0xff;
    }
  }
  return out;
}

describe('roundHalfEven', () => {
  it('rounds ties to even like Python round() and cvRound', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001, 3].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, 3, 3]);
  });
});

describe('resizeBilinearCv: cases worked by hand', () => {
  it('1x4 -> 1x2 (one row, so not the 2x2 area path): 2-tap averages, fixed-point rounding', () => {
    // dx=0: fx = 0.5*2-0.5 = 0.5 -> weights 1024/1024: (0+100)*1024 = 102400;
    //   vertical (fy = 0: b0 = 2048, b1 = 0): ((2048 * (102400 >> 4)) >> 16) = 200; (200 + 2) >> 2 = 50.
    // dx=1: fx = 2.5 -> (200+255)*1024 = 465920; >> 4 = 29120; *2048 >> 16 = 910; (910+2) >> 2 = 228 (227.5 rounded up).
    const out = resizeBilinearCv(Uint8Array.from([0, 100, 200, 255]), 1, 4, 1, 1, 2);
    expect([...out]).toEqual([50, 228]);
  });

  it('1x2 -> 1x4 upscale: clamped borders and quarter weights', () => {
    // dx=0: fx = -0.25 -> sx < 0 -> (sx 0, fx 0) -> 0.
    // dx=1: fx = 0.25 -> a = (1536, 512): 255*512 = 130560 >> 4 = 8160; *2048 >> 16 = 255; 257 >> 2 = 64 (63.75).
    // dx=2: fx = 0.75 -> a = (512, 1536): 391680 >> 4 = 24480; *2048 >> 16 = 765; 767 >> 2 = 191 (191.25).
    // dx=3: fx = 1.25 -> sx = 1 >= w-1 -> (sx 1, fx 0) -> 255.
    const out = resizeBilinearCv(Uint8Array.from([0, 255]), 1, 2, 1, 1, 4);
    expect([...out]).toEqual([0, 64, 191, 255]);
  });

  it('2x2 -> 1x1 (OpenCV takes its INTER_AREA path): (a+b+c+d+2) >> 2', () => {
    expect([...resizeBilinearCv(Uint8Array.from([10, 20, 30, 41]), 2, 2, 1, 1, 1)]).toEqual([25]); // 101/4 = 25.25
    expect([...resizeBilinearCv(Uint8Array.from([10, 20, 30, 42]), 2, 2, 1, 1, 1)]).toEqual([26]); // 25.5 -> 26
  });

  it('3x1 -> 2x1 vertical: weights kept at y borders, each tap truncated before the sum', () => {
    // scale 1.5: dy=0: fy = 0.25 -> rows 0,1, b = (1536, 512); dy=1: fy = 1.75 -> rows 1,2, b = (512, 1536).
    // column [7, 9, 200]: rows are value*2048.
    // dy=0: (1536 * (7*2048 >> 4)) >> 16 = (1536*896) >> 16 = 21; (512 * (9*2048 >> 4)) >> 16 = (512*1152) >> 16 = 9;
    //        (21 + 9 + 2) >> 2 = 8   (float: 7.5)
    // dy=1: (512*1152) >> 16 = 9; (1536 * 25600) >> 16 = 600; (9 + 600 + 2) >> 2 = 152 (float 152.25)
    expect([...resizeBilinearCv(Uint8Array.from([7, 9, 200]), 3, 1, 1, 2, 1)]).toEqual([8, 152]);
  });

  it('keeps channels apart and copies when the size is unchanged', () => {
    const src = Uint8Array.from([0, 10, 250, 100, 20, 240]); // 1x2 RGB
    expect([...resizeBilinearCv(src, 1, 2, 3, 1, 1)]).toEqual([50, 15, 245]);
    const same = resizeBilinearCv(src, 1, 2, 3, 1, 2);
    expect([...same]).toEqual([...src]);
    expect(same).not.toBe(src);
  });
});

describe(`resizeBilinearCv against cv2.resize INTER_LINEAR (OpenCV ${fixtures.opencv})`, () => {
  for (const k of fixtures.small) {
    it(`${k.h}x${k.w}x${k.c} -> ${k.nh}x${k.nw} (random pixels)`, () => {
      const out = resizeBilinearCv(Uint8Array.from(k.src), k.h, k.w, k.c, k.nh, k.nw);
      expect([...out]).toEqual(k.out);
    });
  }
  for (const k of fixtures.large) {
    it(`${k.h}x${k.w}x${k.c} -> ${k.nh}x${k.nw} (hash pattern, sha256 of the output)`, () => {
      const out = resizeBilinearCv(pattern(k.h, k.w, k.c), k.h, k.w, k.c, k.nh, k.nw);
      expect([...out.subarray(0, 16)]).toEqual(k.first);
      expect(createHash('sha256').update(out).digest('hex')).toBe(k.sha256);
    });
  }
  it('a window of the output equals the crop of the whole output', () => {
    for (const [h, w, c, nh, nw, y0, x0, wh, ww] of [
      [375, 500, 3, 256, 341, 0, 42, 256, 256], [28, 28, 1, 32, 32, 3, 5, 20, 9], [10, 7, 3, 4, 9, 1, 2, 3, 7], [6, 6, 3, 6, 6, 1, 1, 4, 4],
    ]) {
      const src = pattern(h, w, c);
      const full = resizeBilinearCv(src, h, w, c, nh, nw);
      const win = resizeBilinearCvWindow(src, h, w, c, nh, nw, y0, x0, wh, ww);
      const expected = cropHWC(full, nh, nw, c, y0, x0, wh, ww);
      expect(Buffer.from(win).equals(Buffer.from(expected))).toBe(true);
    }
    expect(() => resizeBilinearCvWindow(pattern(4, 4, 1), 4, 4, 1, 8, 8, 5, 0, 4, 4)).toThrow(/window/);
  });

  it('differs from plain float bilinear with round-half-up on some pixels (the fixed point matters)', () => {
    const k = fixtures.large[0];
    const src = pattern(k.h, k.w, k.c);
    const cv = resizeBilinearCv(src, k.h, k.w, k.c, k.nh, k.nw);
    let differ = 0;
    const sx = k.w / k.nw;
    const sy = k.h / k.nh;
    for (let y = 0; y < k.nh; y++) {
      const fy = Math.max(0, (y + 0.5) * sy - 0.5);
      const y0 = Math.min(Math.floor(fy), k.h - 1);
      const y1 = Math.min(y0 + 1, k.h - 1);
      const wy = fy - Math.floor(fy);
      for (let x = 0; x < k.nw; x++) {
        const fx = Math.max(0, (x + 0.5) * sx - 0.5);
        const x0 = Math.min(Math.floor(fx), k.w - 1);
        const x1 = Math.min(x0 + 1, k.w - 1);
        const wx = fx - Math.floor(fx);
        for (let c = 0; c < k.c; c++) {
          const p = (yy: number, xx: number): number => src[(yy * k.w + xx) * k.c + c];
          const v = (1 - wy) * ((1 - wx) * p(y0, x0) + wx * p(y0, x1)) + wy * ((1 - wx) * p(y1, x0) + wx * p(y1, x1));
          if (Math.round(v) !== cv[(y * k.nw + x) * k.c + c]) differ++;
        }
      }
    }
    expect(differ).toBeGreaterThan(0);
  });
});

describe('SmallestMaxSize output size (albumentations 1.4.4 rule)', () => {
  for (const s of fixtures.smallest_max_size) {
    it(`${s.h}x${s.w} size ${s.size} -> ${s.out.join('x')}`, () => {
      expect(smallestMaxSizeShape(s.h, s.w, s.size)).toEqual(s.out);
    });
  }
  it('ties round half to even: 4x5 -> 2x2, 12x5 size 2 -> 5x2', () => {
    expect(smallestMaxSizeShape(4, 5, 2)).toEqual([2, 2]); // 2.5 -> 2
    expect(smallestMaxSizeShape(4, 6, 2)).toEqual([2, 3]);
    expect(smallestMaxSizeShape(12, 5, 2)).toEqual([5, 2]); // 4.8 -> 5
  });
  it('smallestMaxSize resizes the shorter side to the size', () => {
    const img = { data: pattern(375, 500, 3), height: 375, width: 500, channels: 3 };
    const r = smallestMaxSize(img, 256);
    expect([r.height, r.width]).toEqual([256, 341]);
    expect(smallestMaxSize(r, 256)).toBe(r);
  });
});

describe('crops', () => {
  it('CenterCrop offsets are floor((H - h) / 2)', () => {
    expect(centerCropOffset(256, 341, 256, 256)).toEqual([0, 42]); // 85 // 2
    expect(centerCropOffset(257, 256, 256, 256)).toEqual([0, 0]);
    expect(centerCropOffset(259, 256, 256, 256)).toEqual([1, 0]);
    expect(centerCropOffset(5, 4, 2, 2)).toEqual([1, 1]);
  });
  it('centerCrop copies the window', () => {
    // 3x4 grey image with value = 10*y + x
    const data = Uint8Array.from({ length: 12 }, (_, i) => 10 * Math.floor(i / 4) + (i % 4));
    const c = centerCrop({ data, height: 3, width: 4, channels: 1 }, 2, 2);
    expect([...c.data]).toEqual([1, 2, 11, 12]);
  });
  it('RandomCrop offsets are int((H - h + 1) * u), covering 0..H-h', () => {
    expect(randomCropOffset(300, 256, 256, 256, 0, 0)).toEqual([0, 0]);
    expect(randomCropOffset(300, 256, 256, 256, 0.999999, 0.999999)).toEqual([44, 0]);
    expect(randomCropOffset(300, 260, 256, 256, 0.5, 0.5)).toEqual([22, 2]);
    const data = Uint8Array.from({ length: 12 }, (_, i) => i);
    const img = { data, height: 3, width: 4, channels: 1 };
    expect([...randomCrop(img, 2, 2, [0.99, 0.0]).data]).toEqual([4, 5, 8, 9]);
    const a = randomCrop(img, 2, 2, new Rng(5));
    const b = randomCrop(img, 2, 2, new Rng(5));
    expect([...a.data]).toEqual([...b.data]);
  });
  it('applyTransform = SmallestMaxSize then the crop', () => {
    const img = { data: pattern(375, 500, 3), height: 375, width: 500, channels: 3 };
    const t = applyTransform(img, { resize: 256, crop: 'center' });
    expect([t.height, t.width]).toEqual([256, 256]);
    const r = smallestMaxSize(img, 256);
    expect([...t.data.subarray(0, 30)]).toEqual([...r.data.subarray(42 * 3, 42 * 3 + 30)]);
    expect(() => applyTransform(img, { resize: 256, crop: 'random' })).toThrow(/uniform/);
    const rc = applyTransform(img, { resize: 256, crop: 'random' }, [0.5, 0.5]);
    expect([...rc.data.subarray(0, 30)]).toEqual([...r.data.subarray(43 * 3, 43 * 3 + 30)]); // int(86 * 0.5) = 43
  });
});

describe('pixels <-> floats', () => {
  it('x / 127.5 - 1 in float32, CHW and HWC', () => {
    const img = { data: Uint8Array.from([0, 127, 255, 1, 128, 254]), height: 1, width: 2, channels: 3 };
    const chw = imageToFloat(img, 'chw');
    const hwc = imageToFloat(img, 'hwc');
    expect([...hwc]).toEqual([0, 127, 255, 1, 128, 254].map((v) => Math.fround(v / 127.5 - 1)));
    expect([...chw]).toEqual([0, 1, 127, 128, 255, 254].map((v) => Math.fround(v / 127.5 - 1)));
    expect(chw[0]).toBe(-1);
    expect(chw[4]).toBe(1);
    const into = new Float32Array(10).fill(9);
    toFloat(img.data, 1, 2, 3, 'chw', into, 2);
    expect([...into.subarray(0, 2)]).toEqual([9, 9]);
    expect([...into.subarray(2, 8)]).toEqual([...chw]);
  });

  it('back to uint8 as the reference: clamp, float32 ((x+1)/2)*255, truncation', () => {
    expect(floatToByte(1)).toBe(255);
    expect(floatToByte(1.7)).toBe(255);
    expect(floatToByte(-1)).toBe(0);
    expect(floatToByte(-3)).toBe(0);
    expect(floatToByte(Number.NaN)).toBe(0);
    expect(floatToByte(0)).toBe(127); // 127.5 truncated
    expect(floatToByte(Math.fround(0.999))).toBe(254); // 254.87 truncated, not rounded
    // Each pixel survives the round trip through the reference's float form, except where
    // float32 rounding puts ((p/127.5-1)+1)/2*255 just below p: truncation then gives p-1.
    let lost = 0;
    for (let p = 0; p < 256; p++) {
      const back = floatToByte(Math.fround(p / 127.5 - 1));
      expect(back === p || back === p - 1).toBe(true);
      if (back !== p) lost++;
    }
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBeLessThan(256);
  });

  it('fromFloat / floatToImage read CHW or HWC', () => {
    const chw = Float32Array.from([-1, 1, 0, 0.5, 1, -1]); // 1x2, channels planes
    expect([...fromFloat(chw, 1, 2, 3, 'chw')]).toEqual([0, 127, 255, 255, 191, 0]);
    const img = floatToImage(chw, 1, 2, 'chw');
    expect(img.channels).toBe(3);
    expect([...floatToImage(Float32Array.from([0, 0, 0, 0, 0, 0, -1, 1, 0, 0.5, 1, -1]), 1, 2, 'chw', 6).data]).toEqual([0, 127, 255, 255, 191, 0]);
  });
});
