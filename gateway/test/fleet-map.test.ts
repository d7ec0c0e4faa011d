import { describe, expect, it } from 'vitest';
import { loadSiteMap, SiteMapError } from '../src/fleet/index.js';
import { hospitalMap } from './fleet-fixtures.js';

describe('site map', () => {
  it('finds shortest paths and travel times (Dijkstra)', () => {
    const map = hospitalMap();
    const p = map.shortestPath('P1', 'W3', 1)!;
    expect(p.nodes).toEqual(['P1', 'C1', 'C2', 'W3']);
    expect(p.edges.map((e) => e.id)).toEqual(['P1--C1', 'C1--C2', 'C2--W3']);
    expect(p.lengthM).toBeCloseTo(30);
    expect(map.travelTimeS('P1', 'W3', 0.5)).toBeCloseTo(60);
    expect(map.shortestPath('W3', 'W3', 1)).toMatchObject({ nodes: ['W3'], edges: [], lengthM: 0 });
  });

  it('prefers the faster path, counting lift time and edge speed limits', () => {
    const map = loadSiteMap({
      nodes: [
        { id: 'A', x: 0, y: 0 },
        { id: 'B', x: 100, y: 0 },
        { id: 'L1', x: 0, y: 0, floor: 1, kind: 'lift' },
        { id: 'B1', x: 100, y: 0, floor: 1 },
      ],
      edges: [
        { from: 'A', to: 'B', maxSpeed: 0.1 },
        { from: 'A', to: 'L1', length: 4, extraTimeS: 60 },
        { from: 'L1', to: 'B1' },
        { from: 'B1', to: 'B', length: 4, extraTimeS: 60 },
      ],
    });
    expect(map.shortestPath('A', 'B', 1)!.nodes).toEqual(['A', 'L1', 'B1', 'B']);
    expect(map.travelTimeS('A', 'B', 1)).toBeCloseTo(4 + 60 + 100 + 4 + 60);
    expect(map.mapIdOf('L1')).toBe('floor-1');
  });

  it('knows unreachable nodes, one-way edges, nearest chargers and checkpoint zones', () => {
    const map = loadSiteMap({
      nodes: [
        { id: 'A', x: 0, y: 0 },
        { id: 'B', x: 1, y: 0, kind: 'charger' },
        { id: 'C', x: 5, y: 0, kind: 'charger' },
        { id: 'island', x: 9, y: 9 },
      ],
      edges: [{ from: 'A', to: 'B', oneWay: true }, { from: 'A', to: 'C' }],
      zones: [{ id: 'z', nodes: ['A'], checkpoint: 'gate-1' }],
    });
    expect(map.shortestPath('A', 'island', 1)).toBeNull();
    expect(map.travelTimeS('B', 'A', 1)).toBe(Infinity);
    expect(map.nearestOfKind('A', 'charger')).toBe('B');
    expect(map.nearestOfKind('A', 'charger', new Set(['B']))).toBe('C');
    expect(map.zoneOfCheckpoint('gate-1')?.id).toBe('z');
    expect(() => map.node('nowhere')).toThrow(/unknown map node "nowhere"/);
  });

  it('names every problem of an invalid map', () => {
    const attempt = () =>
      loadSiteMap({
        nodes: [
          { id: 'A', x: 0, y: 0 },
          { id: 'A', x: 1, y: 0 },
          { id: 'U', x: 0, y: 0, floor: 2 },
        ],
        edges: [{ from: 'A', to: 'ghost' }, { from: 'A', to: 'U' }],
        zones: [{ id: 'z', nodes: ['nowhere'] }],
      });
    expect(attempt).toThrow(SiteMapError);
    try {
      attempt();
    } catch (err) {
      const issues = (err as SiteMapError).issues;
      expect(issues).toContain('/nodes/1/id: duplicate node id "A"');
      expect(issues).toContain('/edges/0/to: unknown node "ghost"');
      expect(issues.join()).toMatch(/\/edges\/1: "A" \(floor 0\) and "U" \(floor 2\) are on different floors; give the edge a length/);
      expect(issues).toContain('/zones/0/nodes/0: unknown node "nowhere"');
    }
    expect(() => loadSiteMap({ nodes: [{ id: 'A', x: 0, y: 0, kind: 'spaceport' }], edges: [] })).toThrow(/\/nodes\/0\/kind/);
    expect(() => loadSiteMap({ nodes: [], edges: [] })).toThrow(/\/nodes/);
  });

  it('keeps names in other languages (the demo map has Chinese ones) and refuses a key that is not a language tag', () => {
    const map = loadSiteMap({
      nodes: [{ id: 'ph', x: 0, y: 0, name: 'Pharmacy', names: { 'zh-CN': '药房' } }],
      edges: [],
      zones: [{ id: 'z', nodes: ['ph'], name: 'Pharmacy area', names: { 'zh-CN': '药房区域' } }],
    });
    expect(map.nodes.get('ph')!.names).toEqual({ 'zh-CN': '药房' });
    expect(map.zones.get('z')).toMatchObject({ name: 'Pharmacy area', names: { 'zh-CN': '药房区域' } });
    expect(() => loadSiteMap({ nodes: [{ id: 'ph', x: 0, y: 0, names: { chinese: '药房' } }], edges: [] })).toThrow(/\/nodes\/0\/names: "chinese" is not a language tag/);
    expect(() => loadSiteMap({ nodes: [{ id: 'ph', x: 0, y: 0 }], edges: [], zones: [{ id: 'z', nodes: ['ph'], names: { 'zh-CN': '' } }] })).toThrow(/\/zones\/0\/names/);
  });
});
