// A horizontal bar chart as a self-contained SVG: one bar per comparison, the ratio written at the
// end of the bar, a line at 1.0 and a tick at each row's target. No dependencies, no network.

const escapeXml = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/**
 * @param {{ title: string, subtitle: string, rows: Array<{ label: string, value: number, target?: number, better: 'higher' | 'lower' }> }} chart
 * @returns {string} the SVG document
 */
export function barChart({ title, subtitle, rows }) {
  const width = 900
  const labelWidth = 410
  const plotWidth = width - labelWidth - 90
  const rowHeight = 30
  const top = 64
  const height = top + rows.length * rowHeight + 40
  const max = Math.max(1.25, ...rows.map((row) => Math.max(row.value, row.target ?? 0) * 1.08))
  const x = (value) => labelWidth + (value / max) * plotWidth
  const meets = (row) =>
    row.target === undefined || (row.better === 'higher' ? row.value >= row.target : row.value <= row.target)

  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13" role="img">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="17" font-weight="600" fill="#111">${escapeXml(title)}</text>`,
    `<text x="16" y="46" fill="#555">${escapeXml(subtitle)}</text>`,
    `<line x1="${x(1)}" y1="${top - 8}" x2="${x(1)}" y2="${height - 30}" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${x(1)}" y="${height - 14}" text-anchor="middle" fill="#555">1.0</text>`,
  ]
  rows.forEach((row, index) => {
    const y = top + index * rowHeight
    const colour = row.target === undefined ? '#6b7fa6' : meets(row) ? '#2f8f5b' : '#c2553a'
    parts.push(
      `<text x="${labelWidth - 10}" y="${y + 17}" text-anchor="end" fill="#222">${escapeXml(row.label)}</text>`,
      `<rect x="${labelWidth}" y="${y + 5}" width="${Math.max(1, x(row.value) - labelWidth)}" height="${rowHeight - 12}" rx="2" fill="${colour}"/>`,
      `<text x="${x(row.value) + 6}" y="${y + 17}" fill="#222">${row.value.toFixed(2)}</text>`,
    )
    if (row.target !== undefined) {
      parts.push(
        `<line x1="${x(row.target)}" y1="${y + 1}" x2="${x(row.target)}" y2="${y + rowHeight - 3}" stroke="#111" stroke-width="2"/>`,
      )
    }
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}
