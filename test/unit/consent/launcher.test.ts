import { describe, expect, it } from 'vitest';
import { splitCommandLine } from '../../../src/consent/launcher.js';

describe('splitCommandLine', () => {
  it('splits on whitespace and groups quoted words like a shell', () => {
    expect(splitCommandLine('chromium --app={url}')).toEqual(['chromium', '--app={url}']);
    expect(splitCommandLine(`sh -c 'printf "%s\\n" "$1" >> /tmp/u' launcher {url}`)).toEqual([
      'sh',
      '-c',
      'printf "%s\\n" "$1" >> /tmp/u',
      'launcher',
      '{url}',
    ]);
    expect(splitCommandLine('"/opt/My Browser/browser" --new-window  {url} ')).toEqual([
      '/opt/My Browser/browser',
      '--new-window',
      '{url}',
    ]);
    expect(splitCommandLine('a\\ b "c\\"d" \'\'')).toEqual(['a b', 'c"d', '']);
  });

  it('refuses an unterminated quote', () => {
    expect(() => splitCommandLine("open 'x")).toThrow(TypeError);
  });
});
